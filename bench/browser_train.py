"""Training in the visitor's browser against our PyTorch trainer and genai-nanogpt, on the same machine in one run.

    python bench/browser_train.py [--steps 3] [--backends wasm webgpu cpu webgl] [--json FILE] [--profile]

The `cpu` preset's shape (4 layers, 4 heads, 128 wide, block 64, batch 32, 65 characters, no bias, no dropout), float32:
- PyTorch: gpt/training/trainer.py's step (forward, backward, clipping, AdamW) on this machine's threads, median of 10;
- ours in the browser: `python app.py --public` on a free port with the page's libraries from webapp/js (GPT_JS_DIR;
  `npm ci` there if missing), Debian's Chromium (headless, `--enable-unsafe-webgpu`) opening the app's
  /browser/train-speed page, which is cross-origin isolated, so WebAssembly runs on every core; then, for WebAssembly,
  the app's own page, which is not (one thread). Its worker's `measure` message: median of --steps steps after a
  first, compiling one;
- genai-nanogpt (`@genai-fi/nanogpt` 1.3.0, pinned in bench/js with esbuild, which bundles bench/js/genai_nanogpt_step.js
  into one script; `npm ci` there if missing): a page under the app's origin that Playwright answers itself, a fresh
  one per backend; a run of its own trainer (`llm.training.job`) on random tokens, logging every step, timed by its
  own log (each entry's `time`, from one log to the next: its step, loss read back); median of --steps steps after
  a first. It has cpu (plain JS), webgl and webgpu, no WebAssembly; we have wasm, webgpu and cpu, no webgl.
Its model at this size (`GenAI_NanoGPT_v1`, `useRope: false`, mlpFactor 4) against ours: GELU (ours ReLU), RMSNorm
with a gain (ours LayerNorm without bias), the output layer tied to the token embedding (ours apart), learned
position embeddings as ours; gradient clipping at 1.0 on WebGPU alone (its clipping kernel exists only there; ours
clips everywhere); its plain-JS AdamW kernel skips the weight decay. Both: AdamW (lr 1e-3, weight decay 0.1, betas
0.9/0.99), float32. Here it has 794,752 parameters, ours 812,416 (its tied output layer).
WebGPU and WebGL here are SwiftShader, a CPU emulation: their figures say nothing about a real GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
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
BENCH_JS = ROOT / "bench" / "js"
CPU_PRESET = TrainConfig.from_preset("cpu")
# the same shape in genai-nanogpt's words (its other choices: bench/js/genai_nanogpt_step.js)
GENAI_CONFIG = {"vocabSize": 65, "blockSize": CPU_PRESET.block_size, "nLayer": CPU_PRESET.n_layer,
                "nHead": CPU_PRESET.n_head, "nEmbed": CPU_PRESET.n_embd}
GENAI_BACKENDS = ("cpu", "webgl", "webgpu")  # no WebAssembly there
SHAPE = {"config": asdict(CPU_PRESET.model_config(65)), "batch_size": CPU_PRESET.batch_size}  # as the speed page's

# the app's own page is not cross-origin isolated: its worker gets one WebAssembly thread
SINGLE = """async ([backend, steps, type, shape]) => {
  const worker = new Worker(GPT_TFJS.worker);
  const ask = (message) => new Promise((ok, fail) => {
    worker.onmessage = ({ data }) => (data.type === "error" ? fail(new Error(data.message)) : ok(data));
    worker.postMessage({ ...message, id: 1 });
  });
  await ask({ type: "init", backend, libraries: GPT_TFJS.libraries });
  const out = await ask({ type, config: shape.config, batch_size: shape.batch_size, steps });
  worker.terminate();
  return out;
}"""  # type "profile": one step's milliseconds by TF.js kernel instead


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


def npm_ci(folder: Path) -> None:
    """The folder's pinned packages, installed once (without their install scripts)."""
    if not (folder / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=folder, check=True)


def bundle_genai_nanogpt(into: Path) -> Path:
    """bench/js/genai_nanogpt_step.js and genai-nanogpt in one script (esbuild): it sets window.genaiMeasure."""
    npm_ci(BENCH_JS)
    out = into / "genai-nanogpt.js"
    subprocess.run([str(BENCH_JS / "node_modules" / ".bin" / "esbuild"), "genai_nanogpt_step.js", "--bundle",
                    "--format=iife", f"--outfile={out}", "--log-level=error"], cwd=BENCH_JS, check=True)
    return out


def genai_tokens_per_sec(browser, origin: str, bundle: Path, backend: str, steps: int) -> dict:
    """genai-nanogpt's step on a fresh page under the app's origin (WebGPU wants a secure context: 127.0.0.1),
    which Playwright serves itself: the app knows nothing of it."""
    page = browser.new_page()
    html = "<!doctype html><title>genai-nanogpt</title><script src='genai-nanogpt.js'></script>"
    page.route(origin + "bench/genai-nanogpt.html", lambda route: route.fulfill(body=html, content_type="text/html"))
    page.route(origin + "bench/genai-nanogpt.js", lambda route: route.fulfill(path=bundle, content_type="text/javascript"))
    page.goto(origin + "bench/genai-nanogpt.html", wait_until="load")
    try:
        return page.evaluate("(a) => genaiMeasure(a)", {"backend": backend, "steps": steps, "config": GENAI_CONFIG,
                                                        "batchSize": CPU_PRESET.batch_size})
    finally:
        page.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="steps measured in the browser, after a first one")
    parser.add_argument("--backends", nargs="+", default=["wasm"], choices=["wasm", "webgpu", "cpu", "webgl"],
                        help="the browser's backends to measure (webgpu here: SwiftShader, about 30 s a step; "
                             "cpu: plain JS; webgl: genai-nanogpt alone)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--profile", action="store_true", help="also print where one of our steps' time goes on each "
                        "backend, by TF.js kernel (its per-kernel timing flatters fewer, larger operations: decide "
                        "with the tokens/s)")
    args = parser.parse_args(argv)

    results = {"pytorch_tokens_per_sec": pytorch_tokens_per_sec(), "torch_threads": torch.get_num_threads()}
    pytorch = results["pytorch_tokens_per_sec"]
    parameters = sum(w.numel() for w in GPT(CPU_PRESET.model_config(65), None).parameters())
    print(f"PyTorch ({results['torch_threads']} threads): {pytorch:,.0f} tokens/s ({parameters:,} parameters)", flush=True)
    env = {"GPT_PUBLIC": "1", "GPT_JS_DIR": str(ROOT / "webapp" / "js")}
    npm_ci(ROOT / "webapp" / "js")
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp, running_app(Path(tmp), env) as app, \
            sync_playwright() as p:
        bundle = bundle_genai_nanogpt(Path(tmp))
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        isolated = browser.new_page()
        isolated.goto(app["url"] + "browser/train-speed", wait_until="load")
        assert isolated.evaluate("() => crossOriginIsolated"), "the speed page is not cross-origin isolated"
        single = browser.new_page()
        single.goto(app["url"], wait_until="load")
        single.wait_for_function("() => window.GPT_TFJS", timeout=60_000)
        for backend in args.backends:
            theirs = None
            if backend in GENAI_BACKENDS:
                r = genai_tokens_per_sec(browser, app["url"], bundle, backend, args.steps)
                theirs = results[f"{backend}_genai_nanogpt"] = r
                print(f"genai-nanogpt {r['device']}: {r['tokens_per_sec']:,.0f} tokens/s, {r['seconds_per_step']:.2f} s "
                      f"a step, {r['tokens_per_sec'] / pytorch:.3f}x PyTorch ({r['parameters']:,} parameters)", flush=True)
            for name, page, script in (("isolated", isolated, "([b, s]) => measure(b, s)"), ("app page", single, SINGLE)):
                if backend == "webgl" or (backend != "wasm" and name == "app page"):
                    continue  # no WebGL in our worker; threads matter to WebAssembly alone
                r = page.evaluate(script, [backend, args.steps, "measure", SHAPE])
                key = f"{backend}_{'isolated' if name == 'isolated' else 'app_page'}"
                results[key] = {k: r[k] for k in ("tokens_per_sec", "seconds_per_step", "device", "threads",
                                                  "crossOriginIsolated", "adapter")}
                line = (f"ours {r['device']} ({name}): {r['tokens_per_sec']:,.0f} tokens/s, {r['seconds_per_step']:.2f} s "
                        f"a step, {r['tokens_per_sec'] / pytorch:.3f}x PyTorch")
                if theirs:
                    results[key]["over_genai_nanogpt"] = r["tokens_per_sec"] / theirs["tokens_per_sec"]
                    line += f", {results[key]['over_genai_nanogpt']:.2f}x genai-nanogpt"
                print(line, flush=True)
            if args.profile and backend != "webgl":
                r = single.evaluate(SINGLE, [backend, 0, "profile", SHAPE])
                print(f"  one step, {r['total_ms']:,.0f} ms (the app's page):", flush=True)
                for k in r["kernels"][:12]:
                    print(f"  {k['ms']:8,.1f} ms {k['calls']:4} x {k['name']}", flush=True)
        browser.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
