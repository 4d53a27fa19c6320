"""Generation in the visitor's browser against generation on the server, in one run on one machine.

    python bench/browser.py [--chars 200] [--contexts 4] [--json bench/results/browser.json]

Starts `python app.py --public` on a free port (a scratch copy of weights/default; onnxruntime-web from the
pinned npm copy in tests/js, installed with `npm ci` there if missing), then measures:
- a lone visitor on the server: gradio_client's /generate, `--chars` characters (seeds 1..3, median);
- a lone visitor's browser (Debian's Chromium, headless, driven by Playwright): the same request through the
  Generate tab, cold (a fresh browser: the model and the runtime downloaded) then warm (the page loaded again:
  both from the browser's cache), with time to the first character, characters/s and the bytes fetched;
- the server's CPU seconds (its process and the engine's, from /proc) during a server generation and during an
  in-browser one, and during as long a time with the same page idle (the page polls the training status every
  second, generating or not): the difference is what the generation itself costs the server;
- `--contexts` browser contexts generating at once: their characters/s in all, and the server's CPU meanwhile.
The browser and the server share these cores, so the ratios are of one machine in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
from gradio_client import Client  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "tests" / "js"
sys.path.insert(0, str(ROOT / "tests"))
import serve  # noqa: E402  the app started and waited for, as the tests start it
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of pid and every process under it (the app and its engine process)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            pass
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, IndexError, ValueError):
            continue
        todo += children.get(p, [])
    return total


def server_generation(client: Client, chars: int, seed: int) -> dict:
    start = time.perf_counter()
    first = None
    job = client.submit("default", "ROMEO:", chars, 0.8, 40, 1.0, seed, api_name="/generate")
    while not job.done():
        if first is None and any(len(text) > len("ROMEO:") for text, _ in job.outputs()):
            first = time.perf_counter() - start
        time.sleep(0.01)
    wall = time.perf_counter() - start
    n = len(job.outputs()[-1][0]) - len("ROMEO:")
    return {"chars": n, "seconds": wall, "chars_per_s": n / wall, "first_char_s": first or wall}


class Visitor:
    """A browser context on the Generate tab."""

    def __init__(self, browser, url: str):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.url = url

        self.page = self.context.new_page()
        self.open()

    def fetched(self) -> int:
        """Bytes of the model and the runtime that came over the network since the page loaded (a file read from
        the browser's Cache Storage makes no request at all)."""
        return self.page.evaluate("""() => performance.getEntriesByType('resource').filter((e) =>
          e.name.includes('/browser/')).reduce((bytes, e) => bytes + e.transferSize, 0)""")

    def open(self):
        self.page.goto(self.url, wait_until="load")
        expect(self.page.locator("#train-progress .status")).to_be_visible(timeout=60_000)
        self.page.get_by_role("tab", name="Generate").click()
        expect(self.page.get_by_label("this browser")).to_be_checked(timeout=30_000)

    def set(self, chars: int, seed: int):
        box = self.page.get_by_label("number input for Characters to generate")
        box.fill(str(chars))
        box.press("Tab")
        self.page.get_by_label("Seed").fill(str(seed))
        self.page.get_by_label("Seed").press("Tab")

    def start(self):
        self.started = time.perf_counter()
        self.page.get_by_role("button", name="Generate", exact=True).click()

    def finish(self) -> dict:
        self.page.wait_for_function("() => document.querySelector('#gen-output textarea').value.length > 6",
                                    timeout=300_000, polling=10)
        first = time.perf_counter() - self.started
        expect(self.page.locator("#gen-where")).to_contain_text("Generated in this browser", timeout=300_000)
        wall = time.perf_counter() - self.started
        where = self.page.locator("#gen-where").inner_text()
        n, seconds = re.search(r"([\d,]+) characters in ([\d.]+) s", where).groups()
        n = int(n.replace(",", ""))
        return {"chars": n, "seconds": wall, "chars_per_s_in_page": n / float(seconds), "chars_per_s": n / wall,
                "first_char_s": first}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, default=200)
    parser.add_argument("--contexts", type=int, default=4, help="browser contexts generating at once")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "browser.json")
    args = parser.parse_args()
    if not (JS / "node_modules" / "onnxruntime-web" / "package.json").is_file():
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=JS, check=True)
    scratch = Path(tempfile.mkdtemp())
    shutil.copytree(ROOT / "weights" / "default", scratch / "default")
    app = serve.start(weights=scratch, timeout=180, env={
        "GPT_PUBLIC": "1", "GPT_ORT_WEB_DIR": str(JS / "node_modules" / "onnxruntime-web" / "dist")})
    url, proc = app.url, app.proc
    figures: dict = {"chars": args.chars, "machine": f"{os.cpu_count()} cores"}
    try:
        client = Client(url, analytics_enabled=False, verbose=False, ssl_verify=False)
        server_generation(client, args.chars, 0)  # warm: the engine's first request loads the weights
        runs, cpu = [], []
        for seed in (1, 2, 3):
            before = cpu_seconds(proc.pid)
            runs.append(server_generation(client, args.chars, seed))
            cpu.append(cpu_seconds(proc.pid) - before)
        figures["server"] = {"chars_per_s": statistics.median(r["chars_per_s"] for r in runs),
                             "first_char_s": statistics.median(r["first_char_s"] for r in runs),
                             "server_cpu_s": statistics.median(cpu)}
        chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"])
            visitor = Visitor(browser, url)
            results = {}
            for run in ("cold", "warm", "warm again"):
                if run != "cold":
                    visitor.open()  # the page loaded again: the model and runtime from the browser's cache
                visitor.set(args.chars, 1)
                time.sleep(3)  # the page's own start (its first events, a session) and the server's last work settle
                before = cpu_seconds(proc.pid)
                visitor.start()
                result = visitor.finish()
                used = cpu_seconds(proc.pid) - before
                before = cpu_seconds(proc.pid)  # the same page, idle as long: what it costs without generating
                time.sleep(result["seconds"])
                idle = cpu_seconds(proc.pid) - before
                results[run] = {**result, "bytes_fetched": visitor.fetched(), "server_cpu_s": used,
                                "server_cpu_s_idle_page": idle, "server_cpu_s_for_the_generation": max(0.0, used - idle)}
            visitor.context.close()
            figures["browser"] = results
            crowd = [Visitor(browser, url) for _ in range(args.contexts)]
            for i, v in enumerate(crowd):  # each loads the model first (cold), then the crowd generates at once
                v.set(20, 100 + i)
                v.start()
                v.finish()
                v.set(args.chars, 100 + i)
            before, start = cpu_seconds(proc.pid), time.perf_counter()
            for v in crowd:
                v.start()
            done = [v.finish() for v in crowd]
            wall = time.perf_counter() - start
            figures["browser_crowd"] = {"contexts": args.contexts, "chars_per_s_total": sum(d["chars"] for d in done) / wall,
                                        "server_cpu_s": cpu_seconds(proc.pid) - before, "seconds": wall}
            browser.close()
    finally:
        app.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    warm = figures["browser"]["warm"]
    figures["ratios"] = {
        "browser_over_server_chars_per_s": warm["chars_per_s_in_page"] / figures["server"]["chars_per_s"],
        "browser_over_server_chars_per_s_wall": warm["chars_per_s"] / figures["server"]["chars_per_s"],
        "server_cpu_browser_over_server": warm["server_cpu_s_for_the_generation"] / figures["server"]["server_cpu_s"],
        "server_cpu_browser_over_server_with_page": warm["server_cpu_s"] / figures["server"]["server_cpu_s"]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
    s, b, c = figures["server"], figures["browser"], figures["browser_crowd"]
    print(f"server, one visitor: {s['chars_per_s']:.0f} characters/s, first character {s['first_char_s'] * 1000:.0f} ms, "
          f"{s['server_cpu_s']:.2f} s of server CPU for {args.chars} characters")
    for run, r in b.items():
        print(f"browser, {run}: {r['chars_per_s']:.0f} characters/s ({r['chars_per_s_in_page']:.0f} in the page's own "
              f"count), first character {r['first_char_s'] * 1000:.0f} ms, {r['bytes_fetched'] / 1e6:.1f} MB fetched, "
              f"{r['server_cpu_s']:.3f} s of server CPU (the page idle as long: {r['server_cpu_s_idle_page']:.3f} s)")
    print(f"{c['contexts']} browsers at once: {c['chars_per_s_total']:.0f} characters/s in all, "
          f"{c['server_cpu_s']:.3f} s of server CPU over {c['seconds']:.1f} s")
    r = figures["ratios"]
    print(f"ratios (warm browser / server): characters/s {r['browser_over_server_chars_per_s']:.2f}x while it writes "
          f"({r['browser_over_server_chars_per_s_wall']:.2f}x from the click, model start-up included); server CPU for "
          f"the generation {r['server_cpu_browser_over_server']:.3f}x "
          f"({r['server_cpu_browser_over_server_with_page']:.3f}x with the page's own polling over the same time)")


if __name__ == "__main__":
    main()
