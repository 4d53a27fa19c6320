"""A newcomer's set-up: the README's two commands are what CI runs, and the test command gets its own browser."""

import contextlib
import importlib.metadata
import io
import re
import runpy
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from browser_setup import ensure_chromium
from conftest import ROOT


def readme_commands() -> list[str]:
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_the_readme_two_commands_are_the_ones_ci_runs():
    app, tests = readme_commands()
    assert app.endswith("pip install -r requirements.txt && python app.py")
    assert tests.endswith("pip install -r requirements-dev.txt && python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert tests in ci  # the very line, as a newcomer copies it
    assert any(line.startswith("setsid bash -c") and f"'{app}'" in line for line in ci)
    assert not any("apt-get" in line or "playwright install" in line for line in ci)  # no help from outside


def test_the_browser_set_up_finds_a_chromium_that_runs():
    path = ensure_chromium()
    version = subprocess.run([path, "--headless", "--no-sandbox", "--version"], capture_output=True, text=True,
                             timeout=60)
    assert version.returncode == 0 and re.search(r"Chrom(e|ium) \d+", version.stdout), version


def test_without_any_way_to_get_a_browser_the_set_up_says_what_to_install(tmp_path):
    with socket.socket() as s:  # nobody listens here: Playwright's download fails as it does offline
        s.bind(("127.0.0.1", 0))
        offline = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = {"PATH": str(Path(sys.executable).parent),  # no chromium and no apt-get on this PATH
           "PLAYWRIGHT_BROWSERS_PATH": str(tmp_path / "none"), "PLAYWRIGHT_DOWNLOAD_HOST": offline,
           "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "browser_setup.py")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and not result.stdout
    assert "playwright install chromium" in result.stderr  # it tried
    assert "sudo apt-get install -y --no-install-recommends chromium" in result.stderr  # and says what to do
    assert "python -m playwright install --with-deps chromium" in result.stderr and "Traceback" not in result.stderr


def test_every_command_the_docs_show_is_a_command_that_answers(monkeypatch):
    """The manual moved to docs/: each `python -m ...` of ours it shows exists and answers --help (the long
    ones, training and pushing, run in their own tests). In this process, as `python -m` runs the module (runpy);
    each command's real process answers --help in tests/test_install.py, as its console script."""
    pages = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    shown = {m for page in pages for m in re.findall(r"python -m ([a-z_.]+)", page.read_text(encoding="utf-8"))}
    ours = sorted(m for m in shown if m.split(".")[0] in ("gpt", "train", "webapp") and m != "gpt.generation.engine_process")
    assert {"train", "gpt.generate", "gpt.hub", "webapp.space"} <= set(ours)
    for module in ours:
        monkeypatch.setattr(sys, "argv", [module, "--help"])
        monkeypatch.delitem(sys.modules, module, raising=False)  # run as `python -m` runs it: not yet imported
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        assert e.value.code == 0 and "usage:" in out.getvalue(), module


def pins(path: Path) -> dict[str, str]:
    """A lock's (or an .in file's) `name==version` lines, names normalised as pip compares them."""
    found = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", path.read_text(encoding="utf-8"), re.M)
    return {canonicalize_name(name): version for name, version in found}


def closure(direct: list[str]) -> set[str]:
    """Every package `direct` needs on this machine, following the installed packages' own requirements."""
    seen: set[str] = set()
    todo = [canonicalize_name(Requirement(line).name) for line in direct]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


LOCKS = {"requirements.txt": ["requirements.in"], "requirements-export.txt": ["requirements-export.in"],
         "requirements-dev.txt": ["requirements.in", "requirements-export.in", "requirements-dev.in"]}


@pytest.mark.parametrize("lock_name", LOCKS)
def test_each_lock_is_exactly_what_its_requirements_need(lock_name):
    """A requirement added or changed in a .in file without `.ci/lock` run fails here: the lock holds every direct
    requirement at a version it allows, and exactly the packages they need (nothing missing, nothing stale)."""
    lock = pins(ROOT / lock_name)
    direct = [line.split("#")[0].strip() for name in LOCKS[lock_name]
              for line in (ROOT / name).read_text(encoding="utf-8").splitlines()]
    direct = [line for line in direct if line and not line.startswith("-r")]
    for line in direct:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in lock and req.specifier.contains(lock[name], prereleases=True), \
            f"{line} is not what {lock_name} holds ({lock.get(name)}): run .ci/lock"
    assert set(lock) == closure(direct) - {"pip", "setuptools"}, f"{lock_name} is stale: run .ci/lock"


def test_the_locks_agree_and_the_test_command_installed_exactly_the_lock():
    dev = pins(ROOT / "requirements-dev.txt")
    for name in ("requirements.txt", "requirements-export.txt"):
        assert pins(ROOT / name).items() <= dev.items(), f"{name} and requirements-dev.txt disagree: run .ci/lock"
    for name, version in dev.items():  # torch's local build is 2.13.0+cpu: the lock's 2.13.0 without the label
        assert importlib.metadata.version(name).split("+")[0] == version, name
    assert "+" not in dev["torch"]  # PyPI has no local builds: a Space or a laptop must be able to install the lock
