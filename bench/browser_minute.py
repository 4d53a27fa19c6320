"""A visitor's minute: the `browser` preset, or other shapes, trained for a minute in the app's page as the Train tab's
"this browser" trains it (the worker's `train` message, Tiny Shakespeare, WebAssembly): steps, tokens/s, the
evaluations and the best val of each.

    python bench/browser_minute.py [--seconds 60] [--json FILE] [SHAPE ...]

Each SHAPE is a JSON object of TrainConfig settings over the browser preset's, '{}' the preset itself (the default);
"threads": 2 runs it on the app's cross-origin isolated speed page with two WebAssembly threads (the app's own page
has one). `python app.py --public` on a free port with the page's libraries from webapp/js, Debian's Chromium headless.
The shapes run one after another in the same browser: compare them within a run.
"""

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from playwright.sync_api import sync_playwright  # noqa: E402

from browser_setup import LAUNCH_ARGS  # noqa: E402
from browser_train import npm_ci  # noqa: E402
from conftest import running_app  # noqa: E402
from gpt.data import load_text  # noqa: E402
from gpt.training.trainer import TrainConfig  # noqa: E402

RUN = """async ([train, text, threads]) => {
  const worker = new Worker(GPT_TFJS.worker), events = [];
  const ask = (message) => new Promise((ok, fail) => {
    worker.onmessage = ({ data }) => (data.type === "event" ? events.push(data)
      : data.type === "error" ? fail(new Error(data.message)) : ok(data));
    worker.postMessage({ ...message, id: 1 });
  });
  await ask({ type: "init", backend: "wasm", libraries: GPT_TFJS.libraries, threads });
  const done = await ask({ type: "train", train, text });
  worker.terminate();
  const steps = events.filter((e) => e.event === "step"), evals = events.filter((e) => e.event === "eval");
  return { steps: done.step, best_val: done.best_val, evaluations: evals.length,
           tokens_per_sec: steps[steps.length - 1].tokens_per_sec, device: events[0].device };
}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shapes", nargs="*", default=["{}"], help="TrainConfig settings over the browser preset's")
    parser.add_argument("--seconds", type=float, default=60, help="each run's time (the Train tab's Train for)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = {}
    text = load_text()  # TINYSHAKESPEARE_PATH, else downloaded once and checked
    npm_ci(ROOT / "webapp" / "js")
    env = {"GPT_PUBLIC": "1", "GPT_JS_DIR": str(ROOT / "webapp" / "js")}
    with tempfile.TemporaryDirectory(prefix="bench-minute-") as tmp, running_app(Path(tmp), env) as app, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=LAUNCH_ARGS)
        pages = {1: browser.new_page(), 2: browser.new_page()}
        pages[1].goto(app["url"], wait_until="load")
        pages[2].goto(app["url"] + "browser/train-speed", wait_until="load")
        for page in pages.values():
            page.wait_for_function("() => window.GPT_TFJS", timeout=60_000)
        for shape in args.shapes:
            settings = json.loads(shape)
            threads = settings.pop("threads", 1)
            train = asdict(TrainConfig.from_preset("browser", max_time=args.seconds, **settings))
            r = results[shape] = pages[threads].evaluate(RUN, [train, text, threads])
            print(f"{shape}: {r['steps']:,} steps at {r['tokens_per_sec']:,.0f} tokens/s, {r['evaluations']} "
                  f"evaluations, best val {r['best_val']:.3f} ({r['device']})", flush=True)
        browser.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
