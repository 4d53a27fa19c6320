"""Generation in the visitor's browser: the server hands out a model's ONNX file once, the page runs it.

The page (browser.js, run by onnxruntime-web) asks /browser/info/NAME what a weights folder offers: its
vocabulary and shape, and the address of its float32 graph (gpt.export's onnx/model.onnx), named by its
digest so a browser caches it for good. Names are the Generate tab's own choices, looked up here; a visitor
never names a path. Weights without an export (the model training now, a run not exported) answer why not, and
the page generates on the server instead.

onnxruntime-web comes from a CDN at a pinned version with its subresource-integrity hash, or, where
GPT_ORT_WEB_DIR names a local copy of its dist/ folder (the tests, an offline classroom), from this server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from gpt import weights
from gpt.errors import GPTError
from gpt.hub import BROWSER_FILE
from webapp.state import LIVE, WEIGHTS, saved_weights

ORT_VERSION = "1.30.0"  # onnxruntime-web, as tests/js/package-lock.json pins it
ORT_CDN = f"https://cdn.jsdelivr.net/npm/onnxruntime-web@{ORT_VERSION}/dist/"
ORT_SCRIPT = "ort.wasm.min.js"  # the WebAssembly build only; it fetches the two files below from the same place
ORT_SCRIPT_SRI = "sha384-Bw6URI+Gvoadw0do7/QrSHUC9D1vCYYK5OSqChFyhyV5mzPL4oe2rOAFljAnS8Sq"  # of ORT_SCRIPT, this version
ORT_WASM_BYTES = 14_239_897  # its ort-wasm-simd-threaded.wasm, which the page fetches too (said before it does)
ORT_FILES = {ORT_SCRIPT: "text/javascript", "ort-wasm-simd-threaded.mjs": "text/javascript",
             "ort-wasm-simd-threaded.wasm": "application/wasm"}
GRAPH = BROWSER_FILE  # onnx/model.onnx, float32: in WebAssembly twice as fast as the int8 graph, and our own text exactly
FOREVER = "public, max-age=31536000, immutable"  # an address named by its content never changes

_digests: dict[tuple[str, int, int], str] = {}
_lock = threading.Lock()


def local_ort() -> Path | None:
    folder = os.environ.get("GPT_ORT_WEB_DIR")
    return Path(folder) if folder and (Path(folder) / ORT_SCRIPT).is_file() else None


def ort_base() -> str:
    """Where the page loads onnxruntime-web from: this server's copy, else the CDN."""
    return "/browser/ort/" if local_ort() else ORT_CDN


def head() -> str:
    """What the page's <head> gets: our code, told where onnxruntime-web is. The library itself is fetched only
    when the browser first generates (a laptop that generates on its server never asks the CDN for anything),
    integrity-checked when it comes from the CDN."""
    script = (Path(__file__).with_name("browser.js")).read_text(encoding="utf-8")
    where = {"base": ort_base(), "script": ORT_SCRIPT, "integrity": None if local_ort() else ORT_SCRIPT_SRI}
    return ('<style>.gpt-hidden { display: none !important; } .gen-where { color: #374151; }</style>\n'
            f'<script>window.GPT_ORT = {json.dumps(where)};</script>\n<script>{script}</script>')


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


ROUTES = [Route("/browser/info/{name:path}", info_route), Route("/browser/model/{name:path}/{digest}.onnx", model_route),
          Route("/browser/ort/{file}", ort_route)]
