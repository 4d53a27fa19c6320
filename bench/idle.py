"""What open pages cost the server: the idle app, idle pages, and pages watching a run.

    python bench/idle.py [--pages 20] [--seconds 20] [--json bench/results/idle.json] [--app-dir ../other-checkout]

Starts `python app.py --public` (GPT_TRAINING_POLICY=anyone, so the bench may start a run) on a scratch copy of
weights/default and reads the CPU time of the app and its children from /proc:
1. the app alone, nobody connected;
2. with --pages anonymous pages open in headless Chromium, once each page's replay of the shipped weights has played;
3. a `cpu` preset run training: its tokens/s with no page open, with the pages watching, and with none again (the
   two bare windows bracket the watched one, so a drift of the machine shows).
The pages' Chromium is the visitors' machines' cost, not the server's, and here it shares the server's two cores: so
the app is pinned to core 0 and Chromium to core 1 (taskset), and the run's tokens/s are compared on core 0, alone
and watched; Chromium's own CPU is reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
from gradio_client import Client  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import serve  # noqa: E402  the app started and waited for, as the tests start it
from browser_setup import LAUNCH_ARGS, find_chromium  # noqa: E402


def tree(pid: int) -> list[int]:
    """pid and every process under it."""
    children: dict[int, list[int]] = {}
    for line in subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout.splitlines():
        p, parent = map(int, line.split())
        children.setdefault(parent, []).append(p)
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def rate(pids_of, seconds: float) -> float:
    """CPU-s/s of the processes pids_of() names, over `seconds`."""
    before, began = cpu_seconds(pids_of()), time.perf_counter()
    time.sleep(seconds)
    return (cpu_seconds(pids_of()) - before) / (time.perf_counter() - began)


def tokens_per_sec(client: Client, seconds: float) -> float:
    """The run's tokens/s over `seconds`, from its step counter (not the last step's figure)."""
    first = client.predict(api_name="/training_status")
    time.sleep(seconds)
    last = client.predict(api_name="/training_status")
    c = last["config"]
    return (last["step"] - first["step"]) * c["batch_size"] * c["block_size"] / (last["elapsed"] - first["elapsed"])


def open_pages(browser, url: str, n: int) -> list:
    """n anonymous visitors' pages of the app, each loaded."""
    pages = []
    for _ in range(n):
        page = browser.new_page()
        page.goto(url, wait_until="load")
        pages.append(page)
    return pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=20, help="pages open at once (default 20)")
    parser.add_argument("--seconds", type=float, default=20, help="length of each measuring window (default 20)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--app-dir", type=Path, default=ROOT, help="the checkout whose app.py to measure (default: "
                        "this one; another commit's, to compare)")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    shutil.copytree(args.app_dir / "weights" / "default", work / "weights" / "default")
    env = {"GPT_TRAINING_POLICY": "anyone", "GPT_MAX_MINUTES": "60", "GPT_MAX_STEPS": "1000000"}
    app = serve.start(["taskset", "-c", "0", sys.executable, "app.py", "--public"], weights=work / "weights", env=env,
                      cwd=args.app_dir, log=work / "app.log", timeout=90)  # the port: $GRADIO_SERVER_PORT
    url = app.url
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=args.app_dir, capture_output=True,
                            text=True).stdout.strip()
    figures: dict = {"app": commit, "pages": args.pages, "seconds": args.seconds, "load_before": os.getloadavg()}
    try:
        time.sleep(5)  # the engine's process started, start-up work done
        server = lambda: tree(app.proc.pid)  # noqa: E731
        figures["idle_app_cpu_s_per_s"] = round(rate(server, args.seconds), 4)
        print(f"idle app: {figures['idle_app_cpu_s_per_s']} CPU-s/s", flush=True)

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=find_chromium(), headless=True, args=LAUNCH_ARGS)
            # Playwright's driver and the browser: every process under this one but the app's
            chromium = lambda: sorted(set(tree(os.getpid())) - set(tree(app.proc.pid)) - {os.getpid()})  # noqa: E731
            pin = lambda: os.system(f"for p in {' '.join(map(str, chromium()))}; do taskset -a -p -c 1 $p; done "  # noqa: E731
                                    "> /dev/null 2>&1")
            pin()
            pages = open_pages(browser, url, args.pages)
            pin()
            pages[-1].wait_for_timeout(75_000)  # every page's replay (45 s from its first poll) played, with room
            began, chrome_before = time.perf_counter(), cpu_seconds(chromium())
            with_pages = rate(server, args.seconds)
            chrome = (cpu_seconds(chromium()) - chrome_before) / (time.perf_counter() - began)
            figures["idle_pages_app_cpu_s_per_s"] = round(with_pages, 4)
            figures["per_idle_page_cpu_s_per_s"] = round((with_pages - figures["idle_app_cpu_s_per_s"]) / args.pages,
                                                         5)
            figures["idle_pages_chromium_cpu_s_per_s"] = round(chrome, 3)
            print(f"{args.pages} idle pages: app {with_pages:.4f} CPU-s/s "
                  f"({figures['per_idle_page_cpu_s_per_s']:+.5f} a page); Chromium itself {chrome:.3f}", flush=True)
            for page in pages:
                page.close()

            client = Client(url, verbose=False, analytics_enabled=False)
            from gpt.training.trainer import TrainConfig

            c = TrainConfig.from_preset("cpu")
            client.predict("cpu", c.n_layer, c.n_head, c.n_embd, c.block_size, c.batch_size, c.learning_rate,
                           1_000_000, c.dropout, 0, 1337, "Tiny Shakespeare", None, "bench-watched", 0,
                           api_name="/start_training")
            time.sleep(10)  # past the first evaluation and the warm-up
            alone = tokens_per_sec(client, args.seconds)
            pages = open_pages(browser, url, args.pages)
            pin()
            pages[-1].wait_for_timeout(60_000)  # the pages' opening requests served: watching, not arriving
            watched = tokens_per_sec(client, args.seconds)
            for page in pages:
                page.close()
            time.sleep(10)  # the closed pages' streams and sessions let go (3 s left the window 17% off the first)
            after = tokens_per_sec(client, args.seconds)
            client.predict(api_name="/stop_training")
            browser.close()
        bare = (alone + after) / 2
        figures.update(run_tokens_per_sec_alone=round(alone), run_tokens_per_sec_watched=round(watched),
                       run_tokens_per_sec_alone_after=round(after), watched_ratio=round(watched / bare, 3))
        print(f"a cpu run: {alone:,.0f} tokens/s alone, {watched:,.0f} with {args.pages} pages watching, "
              f"{after:,.0f} alone again: {watched / bare:.3f}x", flush=True)
    finally:
        app.stop()
        shutil.rmtree(work, ignore_errors=True)
    figures["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
