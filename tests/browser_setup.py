"""A Chromium for the browser tests: found, else installed the way this machine allows, else exactly what to install.

In order: $CHROMIUM (when set, it must exist); Debian's or Ubuntu's `chromium` on the PATH; Playwright's own
download; as root with apt-get, `apt-get install chromium`; `python -m playwright install chromium` (needs the
internet). conftest.py calls ensure_chromium() before any test runs when browser tests are selected, so a
machine that cannot get a browser stops at once with the message below. `python tests/browser_setup.py` does the
same by hand and prints the browser's path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

HOW_TO = """The browser tests need Chromium, and none could be found or installed here. Install one of:
  sudo apt-get install -y --no-install-recommends chromium    (Debian, Ubuntu)
  python -m playwright install --with-deps chromium           (Playwright's own; needs the internet)
or set CHROMIUM=/path/to/chromium (any Chromium or Chrome executable), then run the tests again."""


# how every browser test and bench starts Chromium: headless as root, no calls out of this closed machine
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--disable-dev-shm-usage"]


class BrowserMissing(Exception):
    pass


def playwright_chromium() -> str | None:
    """The browser `playwright install chromium` downloads, if it is there."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        path = p.chromium.executable_path
    return path if os.path.isfile(path) else None


def find_chromium() -> str | None:
    chosen = os.environ.get("CHROMIUM")
    if chosen:
        if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            raise BrowserMissing(f"CHROMIUM={chosen} is not an executable file.\n\n{HOW_TO}")
        return chosen
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return playwright_chromium()


def _try(command: list[str], say) -> None:
    say(f"browser set-up: {' '.join(command)}")
    try:
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass  # what matters is whether a browser is there afterwards


def ensure_chromium(say=lambda line: print(line, file=sys.stderr)) -> str:
    """The path of a Chromium to drive, installing one if this machine allows; else BrowserMissing saying how."""
    found = find_chromium()
    if found:
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        _try(["apt-get", "update", "-qq"], say)
        _try(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], say)
        found = find_chromium()
        if found:
            return found
    _try([sys.executable, "-m", "playwright", "install", "chromium"], say)
    found = find_chromium()
    if found:
        return found
    raise BrowserMissing(HOW_TO)


if __name__ == "__main__":
    try:
        print(ensure_chromium())
    except BrowserMissing as e:
        print(e, file=sys.stderr)
        sys.exit(1)
