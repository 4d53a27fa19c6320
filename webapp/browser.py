"""Generation in the visitor's browser: the server hands out a model's ONNX file once, the page runs it.

The page (browser.js, run by onnxruntime-web) asks /browser/info/NAME what a weights folder offers: its
vocabulary and shape, and the address of its float32 graph (gpt.export's onnx/model.onnx), named by its
digest so a browser caches it for good. Names are the Generate tab's own choices, looked up here; a visitor
never names a path. Weights without an export (the model training now, a run not exported) answer why not, and
the page generates on the server instead.

Training in the visitor's browser runs train_worker.js (a Web Worker, TensorFlow.js; docs/browser-training.md),
served here; the page learns its address and the libraries' from window.GPT_TFJS.

The page's libraries (onnxruntime-web, TensorFlow.js) are pinned in webapp/js/package-lock.json. They come from a
CDN at those versions with their subresource-integrity hashes, or, where GPT_JS_DIR names a folder in which
`npm ci` of that lockfile ran (the tests, an offline classroom), from this server, which then asks no CDN.
GPT_ORT_WEB_DIR (a copy of onnxruntime-web's dist/ folder) still serves onnxruntime-web alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from dataclasses import asdict
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from gpt.sharing import weights
from gpt.data import TINY_SHAKESPEARE_SHA256, tiny_shakespeare_path
from gpt.sharing.card import COLORS
from gpt.errors import GPTError
from gpt.sharing.hub import BROWSER_FILE
from gpt.training.estimate import estimate_time
from gpt.training.presets import LECTURE_VAL
from gpt.training.trainer import TrainConfig
from webapp.state import DEVICE, LIVE, WEIGHTS, runner, saved_weights

ORT_VERSION = "1.30.0"  # onnxruntime-web, as webapp/js/package-lock.json pins it
ORT_CDN = f"https://cdn.jsdelivr.net/npm/onnxruntime-web@{ORT_VERSION}/dist/"
ORT_SCRIPT = "ort.wasm.min.js"  # the WebAssembly build only; it fetches the two files below from the same place
ORT_SCRIPT_SRI = "sha384-Bw6URI+Gvoadw0do7/QrSHUC9D1vCYYK5OSqChFyhyV5mzPL4oe2rOAFljAnS8Sq"  # of ORT_SCRIPT, this version
ORT_WASM_BYTES = 14_239_897  # its ort-wasm-simd-threaded.wasm, which the page fetches too (said before it does)
ORT_FILES = {ORT_SCRIPT: "text/javascript", "ort-wasm-simd-threaded.mjs": "text/javascript",
             "ort-wasm-simd-threaded.wasm": "application/wasm"}
GRAPH = BROWSER_FILE  # onnx/model.onnx, float32: in WebAssembly twice as fast as the int8 graph, and our own text exactly
FOREVER = "public, max-age=31536000, immutable"  # an address named by its content never changes

TFJS_VERSION = "4.22.0"  # @tensorflow/tfjs and its WebAssembly and WebGPU backends, as webapp/js pins them
TFJS_CDN = "https://cdn.jsdelivr.net/npm/"
# name the worker asks for -> (npm package, file in it, media type, subresource integrity of that file, this version).
# The ES2017 builds, not the ES5 ones (tf.min.js): with those, V8 slows plain JS's matMul loop by 1.6x once other
# kernels have run (a training step 20 s against 13.6 s, bench/README.md); they are a quarter smaller too
TFJS_FILES = {
    "tf.es2017.min.js": ("@tensorflow/tfjs", "dist/tf.es2017.min.js", "text/javascript",
                         "sha384-ODzrY1mCTIRZRerZfDIqCoTQafA1St1OwLVc9SsTefnkCF1MeIaVSZ88wuK/NKfH"),
    "tf-backend-wasm.es2017.min.js": ("@tensorflow/tfjs-backend-wasm", "dist/tf-backend-wasm.es2017.min.js",
                                      "text/javascript",
                                      "sha384-SqoVPLooc7QMMmp0JuPMz9M6JqkYFd7wX08paKmclTcGS/36X7RY+hbkK7Big30W"),
    "tfjs-backend-wasm.wasm": ("@tensorflow/tfjs-backend-wasm", "dist/tfjs-backend-wasm.wasm", "application/wasm",
                               "sha384-ZwWxXkngOvkV9/jOFE8ZwnuJTftuqBs9dPATM9/5t0SK6UNhYkhiCmKe98UmiVMj"),
    "tfjs-backend-wasm-simd.wasm": ("@tensorflow/tfjs-backend-wasm", "dist/tfjs-backend-wasm-simd.wasm",
                                    "application/wasm",
                                    "sha384-K3GxiUF8sNsf8m8ZYuEKWXFARCxCn0erZqbTdbYOpxeDRf0k+CWFF5gZ3xbW4cez"),
    "tfjs-backend-wasm-threaded-simd.wasm": ("@tensorflow/tfjs-backend-wasm", "dist/tfjs-backend-wasm-threaded-simd.wasm",
                                             "application/wasm",
                                             "sha384-EuJw7PP3AQ4wqZVHrEgsG4/kh0NOitIk4QYoE+NEXyq03nKu/1qfVy0MSCwvvzMK"),
    "tf-backend-webgpu.es2017.min.js": ("@tensorflow/tfjs-backend-webgpu", "dist/tf-backend-webgpu.es2017.min.js",
                                        "text/javascript",
                                        "sha384-PMbEpqRHflyIjqjUzZNr1ZjYSccb6KDXZAfYugyFU5jJ0Z+CFE+qPYxpLm6JTQkL"),
    # the page zips a run trained in the browser (model.safetensors, config.json, metrics.jsonl) for its Download
    "fflate.min.js": ("fflate", "umd/index.js", "text/javascript",
                      "sha384-DT0Ls0mO7JmjTnT+oBuMhEJzYJO1zUqzuuMXNdnOmOQRIpN2BgSjvBV/j50NngIT"),
}
VERSIONS = {"fflate": "0.8.2"}  # packages not at TFJS_VERSION, as webapp/js/package-lock.json pins them
WORKER = Path(__file__).with_name("train_worker.js")

_digests: dict[tuple[str, int, int], str] = {}
_lock = threading.Lock()


def local_js() -> Path | None:
    """The node_modules of GPT_JS_DIR (a folder where `npm ci` of webapp/js's lockfile ran), or None: the CDN."""
    folder = os.environ.get("GPT_JS_DIR")
    return Path(folder) / "node_modules" if folder and (Path(folder) / "node_modules").is_dir() else None


def local_ort() -> Path | None:
    modules = local_js()
    folder = str(modules / "onnxruntime-web" / "dist") if modules else os.environ.get("GPT_ORT_WEB_DIR")
    return Path(folder) if folder and (Path(folder) / ORT_SCRIPT).is_file() else None


def tfjs_libraries() -> dict[str, dict]:
    """Where the training worker loads each TensorFlow.js file from: {name: {url, integrity}}; integrity None for
    this server's copy (GPT_JS_DIR), else the CDN's address at the pinned version and the file's hash."""
    local = local_js() is not None
    return {name: {"url": f"/browser/js/{name}", "integrity": None} if local else
            {"url": f"{TFJS_CDN}{package}@{VERSIONS.get(package, TFJS_VERSION)}/{file}", "integrity": sri}
            for name, (package, file, _, sri) in TFJS_FILES.items()}


def ort_base() -> str:
    """Where the page loads onnxruntime-web from: this server's copy, else the CDN."""
    return "/browser/ort/" if local_ort() else ORT_CDN


def training_files() -> dict:
    """window.GPT_TFJS: the training worker's address (named by its digest) and the libraries'. worker None where the
    file is missing (an installed package whose package-data lacks train_worker.js): the rest of the app works."""
    worker = f"/browser/train-worker.js?v={digest(WORKER)}" if WORKER.is_file() else None
    return {"worker": worker, "libraries": tfjs_libraries(),
            "data": {"url": f"/browser/data/tinyshakespeare-{TINY_SHAKESPEARE_SHA256[:16]}.txt",
                     "sha256": TINY_SHAKESPEARE_SHA256}}


def head() -> str:
    """What the page's <head> gets: our code, told where onnxruntime-web is. The library itself is fetched only
    when the browser first generates (a laptop that generates on its server never asks the CDN for anything),
    integrity-checked when it comes from the CDN."""
    script = "\n".join(Path(__file__).with_name(name).read_text(encoding="utf-8")
                       for name in ("browser.js", "train_browser.js", "live.js"))
    where = {"base": ort_base(), "script": ORT_SCRIPT, "integrity": None if local_ort() else ORT_SCRIPT_SRI}
    training = training_files()
    chart = {"colors": COLORS, "lecture": LECTURE_VAL}  # a run in the browser is drawn as the server's (train.py)
    return ('<style>.gpt-hidden { display: none !important; } .gen-where { color: #374151; }</style>\n'
            f'<script>window.GPT_ORT = {json.dumps(where)};\nwindow.GPT_TFJS = {json.dumps(training)};\n'
            f'window.GPT_TRAIN = {json.dumps(chart)};</script>\n'
            f'<script>{script}</script>')


def digest(path: Path) -> str:
    """A short content hash of the graph (remembered by size and time): its address changes when it does."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key not in _digests:
            h = hashlib.sha256(path.read_bytes()).digest()
            _digests[key] = base64.urlsafe_b64encode(h[:12]).decode()
        return _digests[key]


def graph_of(name: str) -> Path | None:
    """The graph of a weights choice of the Generate tab, or None: names not in the list are not looked up."""
    if name not in saved_weights():
        return None
    path = WEIGHTS / name / GRAPH
    return path if path.is_file() else None


def info(name: str) -> dict:
    """What the page needs to generate with `name` in the browser, or {"reason": why it cannot}."""
    if name == LIVE:
        return {"reason": "the model training now has no export yet: it runs on the server"}
    path = graph_of(name)
    if path is None:
        return {"reason": f"{name} has no browser export (onnx/model.onnx; python -m gpt.export "
                          f"writes one): it runs on the server"}
    try:
        config, vocab = weights.read_config(WEIGHTS / name)
    except GPTError as e:
        return {"reason": f"{name} cannot run in the browser ({e}): it runs on the server"}
    return {"name": name, "url": f"/browser/model/{name}/{digest(path)}.onnx", "bytes": path.stat().st_size,
            "runtime_bytes": ORT_WASM_BYTES,
            "vocab": vocab, "block_size": config.block_size, "n_layer": config.n_layer, "n_head": config.n_head,
            "head_size": config.head_size}


async def info_route(request: Request) -> Response:
    return JSONResponse(info(request.path_params["name"]), headers={"Cache-Control": "no-cache"})


async def model_route(request: Request) -> Response:
    path = graph_of(request.path_params["name"])
    if path is None or digest(path) != request.path_params["digest"]:
        return Response("no such model file", status_code=404)
    return FileResponse(path, media_type="application/octet-stream", headers={"Cache-Control": FOREVER})


async def ort_route(request: Request) -> Response:
    folder, file = local_ort(), request.path_params["file"]
    if folder is None or file not in ORT_FILES:  # only the three files of the pinned library
        return Response("not here", status_code=404)
    return FileResponse(folder / file, media_type=ORT_FILES[file], headers={"Cache-Control": "public, max-age=86400"})


async def js_route(request: Request) -> Response:
    modules, file = local_js(), request.path_params["file"]
    if modules is None or file not in TFJS_FILES:  # only the pinned library's files, from GPT_JS_DIR
        return Response("not here", status_code=404)
    package, path, media_type, _ = TFJS_FILES[file]
    return FileResponse(modules / package / path, media_type=media_type,
                        headers={"Cache-Control": "public, max-age=86400", **ISOLATED})


async def worker_route(request: Request) -> Response:
    # its address carries its digest (head()): a changed worker is fetched again, an unchanged one comes from cache
    return FileResponse(WORKER, media_type="text/javascript", headers={"Cache-Control": FOREVER, **ISOLATED})


async def data_route(request: Request) -> Response:
    """Tiny Shakespeare for a run in the browser: the server's verified copy (downloaded once), at an address
    named by its checksum, so the browser keeps it; the page checks the checksum again."""
    if request.path_params["digest"] != TINY_SHAKESPEARE_SHA256[:16]:
        return Response("no such file", status_code=404)
    try:
        path = await run_in_threadpool(tiny_shakespeare_path)
    except GPTError as e:
        return Response(str(e), status_code=503)
    return FileResponse(path, media_type="text/plain; charset=utf-8", headers={"Cache-Control": FOREVER})


# Cross-origin isolation: what lets WebAssembly run on several threads (SharedArrayBuffer). Only the speed page
# below has it: Gradio's page loads assets from elsewhere that would have to allow it first.
ISOLATED = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
            "Cross-Origin-Resource-Policy": "same-origin"}

SPEED_PAGE = """<!doctype html><html lang="en"><meta charset="utf-8"><title>Training speed of this browser</title>
<body style="font-family: sans-serif; margin: 2em">
<h1>How fast does this browser train?</h1>
<p>One training step of the <code>cpu</code> preset's model (SHAPE_WORDS) in this browser, measured a few times,
beside the same step of this server's own trainer (PyTorch). A run in this browser trains at about that speed: on a
laptop with a GPU, WebGPU may beat the server.</p>
<p><button id="measure">Measure</button> <select id="backend"><option value="wasm">WebAssembly</option>
<option value="webgpu">WebGPU</option><option value="cpu">plain JavaScript (a minute)</option></select></p>
<p id="result"></p>
<script>window.GPT_TFJS = TFJS_JSON; window.GPT_SPEED = SHAPE_JSON;</script>
<script>
// measure(backend): {tokens_per_sec, seconds_per_step, device, threads, ...} from a fresh worker
window.measure = (backend, steps = 3) => new Promise((resolve, reject) => {
  const worker = new Worker(GPT_TFJS.worker);
  const ask = (message) => new Promise((ok, fail) => {
    worker.onmessage = ({ data }) => (data.type === "error" ? fail(new Error(data.message)) : ok(data));
    worker.postMessage({ ...message, id: 1 });
  });
  ask({ type: "init", backend, libraries: GPT_TFJS.libraries })
    .then(() => ask({ type: "measure", config: GPT_SPEED.config, batch_size: GPT_SPEED.batch_size, steps }))
    .then(resolve, reject).finally(() => worker.terminate());
});
// the server's figure first: on a laptop the two would share its cores
const serverSpeed = () => fetch("train-speed/server.json").then((r) => r.json()).catch(() => ({}));
const rate = (n) => `${Math.round(n).toLocaleString("en")} tokens/s`;
document.getElementById("measure").onclick = async () => {
  const out = document.getElementById("result");
  out.textContent = "Measuring…";
  const server = await serverSpeed();
  try {
    const r = await measure(document.getElementById("backend").value);
    const here = `This browser, ${r.device}: ${rate(r.tokens_per_sec)} (${r.seconds_per_step.toFixed(2)} s a step). `;
    out.textContent = here + (server.tokens_per_sec ? `This server's trainer, ${server.device}: ` +
      `${rate(server.tokens_per_sec)}${server.rough ? " (rough: it was busy)" : ""}. This browser trains at ` +
      `${(r.tokens_per_sec / server.tokens_per_sec).toPrecision(3)}x the server's speed.` : `This server: ${server.why || "no figure"}.`);
  } catch (e) { out.textContent = `Could not measure: ${e.message}`; }
};
</script>
"""


def speed_shape() -> dict:
    """What the speed page times: the cpu preset's model (65 characters) and batch, as the worker's measure takes them."""
    train = TrainConfig.from_preset("cpu")
    return {"config": asdict(train.model_config(65)), "batch_size": train.batch_size}


_speed_lock = threading.Lock()  # one timing at a time, whoever asks: the next asker gets the figure it made


def server_speed() -> dict:
    """This server's trainer on the speed page's shape: tokens/s (estimate_time's timed steps, remembered a minute)."""
    if runner.running:
        return {"tokens_per_sec": None, "why": "it is training, and does not time itself meanwhile (it would slow the run)"}
    train = TrainConfig.from_preset("cpu")  # speed_shape()'s
    with _speed_lock:
        guess = estimate_time(train)
    return {"tokens_per_sec": train.batch_size * train.block_size / guess.step_seconds, "device": DEVICE,
            "rough": guess.rough}


async def server_speed_route(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(server_speed), headers={"Cache-Control": "no-cache"})


async def speed_route(request: Request) -> Response:
    shape = speed_shape()
    c = shape["config"]
    words = f"{c['n_layer']} layers, {c['n_embd']} wide, block {c['block_size']}, batch {shape['batch_size']}"
    page = (SPEED_PAGE.replace("SHAPE_WORDS", words).replace("SHAPE_JSON", json.dumps(shape))
            .replace("TFJS_JSON", json.dumps(training_files())))
    return HTMLResponse(page, headers={"Cache-Control": "no-cache", **ISOLATED})


ROUTES = [Route("/browser/info/{name:path}", info_route), Route("/browser/model/{name:path}/{digest}.onnx", model_route),
          Route("/browser/ort/{file}", ort_route), Route("/browser/js/{file}", js_route),
          Route("/browser/train-worker.js", worker_route),
          Route("/browser/data/tinyshakespeare-{digest}.txt", data_route), Route("/browser/train-speed", speed_route),
          Route("/browser/train-speed/server.json", server_speed_route)]
