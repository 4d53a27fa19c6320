"""Training in the visitor's browser against our PyTorch trainer, on the same machine in one run.

    python bench/browser_train.py [--steps 3] [--backends wasm webgpu] [--json bench/results/browser_train.json]

The `cpu` preset's shape (4 layers, 128 wide, block 64, batch 32, 65 characters), float32:
- PyTorch: gpt/training/trainer.py's step (forward, backward, clipping, AdamW) on this machine's threads, median of 10;
- the browser: `python app.py --public` on a free port with the page's libraries from webapp/js (GPT_JS_DIR; `npm ci`
  there if missing), Debian's Chromium (headless, `--enable-unsafe-webgpu`) opening the app's /browser/train-speed
  page, which is cross-origin isolated, so WebAssembly runs on every core; then the same page with a worker that is
  not (the app's own page: one thread). Median of --steps steps after a first, compiling one.
WebGPU here is SwiftShader, a CPU emulation: its figure says nothing about a real GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from browser_setup import LAUNCH_ARGS  # noqa: E402
from conftest import running_app  # noqa: E402
from gpt import GPT  # noqa: E402
from gpt.training.optim import build_optimizer  # noqa: E402
from gpt.training.trainer import TrainConfig  # noqa: E402

ARGS = [*LAUNCH_ARGS, "--enable-unsafe-webgpu"]

# the app's own page is not cross-origin isolated: its worker gets one WebAssembly thread
SINGLE = """async ([backend, steps]) => {
  const worker = new Worker(GPT_TFJS.worker);
  const ask = (message) => new Promise((ok, fail) => {
    worker.onmessage = ({ data }) => (data.type === "error" ? fail(new Error(data.message)) : ok(data));
    worker.postMessage({ ...message, id: 1 });
  });
  await ask({ type: "init", backend, libraries: GPT_TFJS.libraries });
  const config = { vocab_size: 65, block_size: 64, n_layer: 4, n_head: 4, n_embd: 128, dropout: 0, bias: false };
  const out = await ask({ type: "measure", config, batch_size: 32, steps });
  worker.terminate();
  return out;
}"""


def pytorch_tokens_per_sec(steps: int = 10) -> float:
    train = TrainConfig.from_preset("cpu", optimizer="adamw")
    torch.manual_seed(0)
    model = GPT(train.model_config(65), None)
    optimizer = build_optimizer(model, "adamw", train.learning_rate, train.muon_lr, train.weight_decay,
                                (train.beta1, train.beta2))
    times = []
    for i in range(steps + 1):
        X = torch.randint(65, (train.batch_size, train.block_size))
        Y = torch.randint(65, (train.batch_size, train.block_size))
        began = time.perf_counter()
        _, loss = model(X, Y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        optimizer.step()
        if i:
            times.append(time.perf_counter() - began)
    return train.batch_size * train.block_size / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="steps measured in the browser, after a first one")
    parser.add_argument("--backends", nargs="+", default=["wasm"], choices=["wasm", "webgpu"],
                        help="the browser's backends to measure (webgpu here: SwiftShader, about 30 s a step)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    results = {"pytorch_tokens_per_sec": pytorch_tokens_per_sec(), "torch_threads": torch.get_num_threads()}
    print(f"PyTorch ({results['torch_threads']} threads): {results['pytorch_tokens_per_sec']:,.0f} tokens/s", flush=True)
    env = {"GPT_PUBLIC": "1", "GPT_JS_DIR": str(ROOT / "webapp" / "js")}
    if not (ROOT / "webapp" / "js" / "node_modules").is_dir():
        import subprocess

        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=ROOT / "webapp" / "js",
                       check=True)
    with running_app(Path(tempfile.mkdtemp(prefix="bench-train-")), env) as app, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        isolated = browser.new_page()
        isolated.goto(app["url"] + "browser/train-speed", wait_until="load")
        assert isolated.evaluate("() => crossOriginIsolated"), "the speed page is not cross-origin isolated"
        single = browser.new_page()
        single.goto(app["url"], wait_until="load")
        single.wait_for_function("() => window.GPT_TFJS", timeout=60_000)
        for backend in args.backends:
            for name, page, script in (("isolated", isolated, "([b, s]) => measure(b, s)"), ("app page", single, SINGLE)):
                if backend == "webgpu" and name == "app page":
                    continue  # threads matter to WebAssembly alone
                r = page.evaluate(script, [backend, args.steps])
                key = f"{backend}_{'isolated' if name == 'isolated' else 'app_page'}"
                results[key] = {k: r[k] for k in ("tokens_per_sec", "seconds_per_step", "device", "threads",
                                                  "crossOriginIsolated", "adapter")}
                ratio = r["tokens_per_sec"] / results["pytorch_tokens_per_sec"]
                print(f"{r['device']} ({name}): {r['tokens_per_sec']:,.0f} tokens/s, {r['seconds_per_step']:.2f} s a "
                      f"step, {ratio:.3f}x PyTorch", flush=True)
        browser.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
