"""Training in the visitor's browser (webapp/train_worker.js): TensorFlow.js from the pinned npm copy (GPT_JS_DIR,
webapp/js), in headless Chromium on WebAssembly and on WebGPU (SwiftShader), against our PyTorch model, AdamW,
learning-rate schedule and clipping. One public app and one page serve the whole file but its last test (Push, as a
signed-in visitor of the Space app); the page reaches the app alone."""

import base64
import hashlib
import json
import re
import zipfile
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from playwright.sync_api import expect
from safetensors.torch import load_file, save

from test_browser import ARTIFACTS
from gpt import GPT, GPTConfig
from gpt.training import log as runlog
from gpt.data import TextData, load_text
from gpt.generation.decode import stream_text
from gpt.errors import DataError
from gpt.evaluate import split_loss
from gpt.training.optim import build_optimizer
from gpt.tokenizer import CharTokenizer
from gpt.training.trainer import TrainConfig, get_lr, moving_average

@pytest.fixture(scope="session")
def app(public_app):
    """The public app (conftest.py) that serves the page's libraries itself: a visitor's browser trains here."""
    return public_app


# The page's side of the tests: workers by name, one request at a time each, typed arrays as base64 both ways.
HELPERS = """() => {
  window.workers = {};
  const b64 = (buffer) => {
    const bytes = new Uint8Array(buffer.buffer || buffer, buffer.byteOffset || 0, buffer.byteLength);
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(text);
  };
  window.unb64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0)).buffer;
  window.events = {};  // name -> the events its runs sent
  window.ask = (name, message) => new Promise((resolve, reject) => {
    if (!workers[name]) {
      workers[name] = new Worker(GPT_TFJS.worker);
      events[name] = [];
      workers[name].addEventListener("message", ({ data }) => data.type === "event" && events[name].push(data));
    }
    const worker = workers[name], id = Math.random();
    const listen = ({ data }) => {
      if (data.id !== id) return;
      worker.removeEventListener("message", listen);
      if (data.type === "error") return reject(new Error(data.message));
      for (const [k, v] of Object.entries(data)) if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) data[k] = b64(v);
      if (data.grads) for (const [k, v] of Object.entries(data.grads)) data.grads[k] = b64(v);
      resolve(data);
    };
    worker.addEventListener("message", listen);
    worker.postMessage({ ...message, id });
  });
}"""


class Page:
    """The app's page in Chromium (a secure context: http://127.0.0.1), and its training workers."""

    def __init__(self, page):
        self.page = page

    def ask(self, worker: str, message: dict, buffer: bytes | None = None) -> dict:
        if buffer is None:
            return self.page.evaluate("([w, m]) => ask(w, m)", [worker, message])
        return self.page.evaluate("([w, m, b]) => ask(w, {...m, safetensors: unb64(b)})",
                                  [worker, message, base64.b64encode(buffer).decode()])

    def init(self, worker: str, backend: str) -> dict:
        return self.page.evaluate("([w, b]) => ask(w, {type: 'init', backend: b, libraries: GPT_TFJS.libraries})",
                                  [worker, backend])

    def load(self, worker: str, model: GPT) -> None:
        config = {k: getattr(model.config, k) for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd",
                                                         "dropout", "bias")}
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        self.ask(worker, {"type": "build", "config": config, "vocab": model.vocab}, save(state))

    def loss(self, worker: str, X, Y, grads=False) -> tuple[float, dict[str, torch.Tensor]]:
        B, T = X.shape
        out = self.ask(worker, {"type": "loss", "x": X.flatten().tolist(), "y": Y.flatten().tolist(), "B": B, "T": T,
                                "grads": grads})
        return out["loss"], {k: floats(v) for k, v in (out.get("grads") or {}).items()}

    def logits(self, worker: str, X) -> torch.Tensor:
        B, T = X.shape
        out = self.ask(worker, {"type": "logits", "x": X.flatten().tolist(), "B": B, "T": T})
        return floats(out["logits"]).view(B, T, -1)

    def export(self, worker: str, folder) -> None:
        out = self.ask(worker, {"type": "exportWeights"})
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.safetensors").write_bytes(base64.b64decode(out["model.safetensors"]))
        (folder / "config.json").write_text(out["config.json"], encoding="utf-8")


def floats(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.float32)


@pytest.fixture(scope="session")
def context(app, chromium):
    """An anonymous visitor whose pages reach the app alone, for the whole file (and the minute run, which goes on
    while the other browser tests run). Its `sent` lists the requests' (url, body) that went to the app."""
    context = chromium.new_context(accept_downloads=True)
    outside, context.sent = [], []
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(app["url"])
                  else (outside.append(route.request.url), route.abort()))
    context.on("request", lambda r: context.sent.append((r.url, r.post_data or "")))
    yield context
    assert outside == []  # every library came from the app: no CDN, nothing else
    context.close()


@pytest.fixture(scope="module")
def page(app, context):
    """One page of the app for the worker's checks."""
    tab = context.new_page()
    tab.goto(app["url"], wait_until="load")
    tab.wait_for_function("() => window.GPT_TFJS", timeout=60_000)  # Gradio adds the head's scripts itself
    tab.evaluate(HELPERS)
    yield Page(tab)
    tab.close()


@pytest.fixture(scope="module")
def wasm(page):
    info = page.init("wasm", "wasm")
    assert info["backend"] == "wasm"
    return "wasm"


@pytest.fixture(scope="module")
def webgpu(page):
    info = page.init("webgpu", "webgpu")
    assert info["backend"] == "webgpu" and "swiftshader" in info["adapter"]  # headless Chromium's adapter here
    return "webgpu"


@pytest.fixture(scope="module")
def plain_js(page):
    info = page.init("cpu", "cpu")  # TF.js's plain-JavaScript backend: where WebAssembly does not start
    assert info["backend"] == "cpu"
    return "cpu"


@pytest.fixture(scope="module")
def vocab(shakespeare):
    return CharTokenizer.from_text(shakespeare)


def batches(shakespeare, vocab, n, B, T, seed=0):
    data = torch.tensor(vocab.encode(shakespeare[:100_000]))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(n):
        ix = torch.randint(len(data) - T, (B,), generator=generator)
        yield torch.stack([data[i:i + T] for i in ix]), torch.stack([data[i + 1:i + T + 1] for i in ix])


def spread_out(config: GPTConfig, vocab, seed=0, std=0.1) -> GPT:
    """A model whose every parameter matters: wider weights than the init (so the loss is far from ln(vocab)),
    LayerNorm gains and biases away from 1 and 0."""
    torch.manual_seed(seed)
    model = GPT(config, vocab.chars)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * std + (1.0 if name.endswith("weight") and p.dim() == 1 else 0.0))
    return model


def check_loss_and_gradients(page, worker, model, X, Y):
    loss, grads = page.loss(worker, X, Y, grads=True)
    model.zero_grad()
    _, expected = model(X, Y)
    expected.backward()
    assert abs(expected.item() - torch.log(torch.tensor(float(model.config.vocab_size)))) > 0.3  # not a uniform guess
    assert abs(loss - expected.item()) <= 1e-4, (loss, expected.item())
    names = [name for name, _ in model.named_parameters()]
    assert sorted(grads) == sorted(names)
    for name, p in model.named_parameters():
        relative = (grads[name] - p.grad.flatten()).norm() / p.grad.norm()
        assert relative <= 1e-4, (name, relative.item())


def page_steps(page, worker, data, train: TrainConfig) -> list[float]:
    settings = {k: getattr(train, k) for k in ("learning_rate", "min_lr", "warmup_iters", "max_iters", "weight_decay",
                                                "beta1", "beta2", "grad_clip", "ema")}
    B, T = data[0][0].shape
    return page.ask(worker, {"type": "steps", "train": settings, "batches": [
        {"x": X.flatten().tolist(), "y": Y.flatten().tolist(), "B": B, "T": T} for X, Y in data]})["losses"]


def pytorch_steps(model, data, train: TrainConfig, average=None) -> tuple[list[float], list[float]]:
    """gpt/training/trainer.py's steps, line for line: (the losses, the gradients' norms before clipping). With
    average, the weights' moving average is updated after each step, as the trainer does with ema."""
    optimizer = build_optimizer(model, "adamw", train.learning_rate, train.muon_lr, train.weight_decay,
                                (train.beta1, train.beta2))
    losses, norms = [], []
    for step, (X, Y) in enumerate(data):
        for group in optimizer.param_groups:
            group["lr"] = get_lr(step, train)
        _, loss = model(X, Y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip).item())
        optimizer.step()
        if average is not None:
            average.update_parameters(model)
        losses.append(loss.item())
    return losses, norms


def test_the_page_s_libraries_are_pinned_and_the_cdn_s_integrity_hashes_are_theirs(js_dir, monkeypatch):
    from webapp import browser

    lock = json.loads((js_dir / "package-lock.json").read_text())["packages"]
    for package in ("@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm", "@tensorflow/tfjs-backend-webgpu"):
        assert lock[f"node_modules/{package}"]["version"] == browser.TFJS_VERSION
    assert lock["node_modules/onnxruntime-web"]["version"] == browser.ORT_VERSION
    for package, version in browser.VERSIONS.items():
        assert lock[f"node_modules/{package}"]["version"] == version
    for name, (package, file, _, sri) in browser.TFJS_FILES.items():
        digest = hashlib.sha384((js_dir / "node_modules" / package / file).read_bytes()).digest()
        assert sri == "sha384-" + base64.b64encode(digest).decode(), name  # what the CDN must serve, byte for byte
    monkeypatch.delenv("GPT_JS_DIR", raising=False)
    monkeypatch.delenv("GPT_ORT_WEB_DIR", raising=False)
    cdn = browser.tfjs_libraries()
    assert cdn["tf.es2017.min.js"] == {"url": "https://cdn.jsdelivr.net/npm/@tensorflow/tfjs@4.22.0/dist/tf.es2017.min.js",
                                       "integrity": browser.TFJS_FILES["tf.es2017.min.js"][3]}
    assert browser.ort_base().startswith("https://cdn.jsdelivr.net/")
    ort = js_dir / "node_modules" / "onnxruntime-web" / "dist"
    monkeypatch.setenv("GPT_ORT_WEB_DIR", str(ort))  # the older setting: onnxruntime-web alone, from that folder
    assert browser.ort_base() == "/browser/ort/" and browser.local_ort() == ort
    assert browser.tfjs_libraries()["tf.es2017.min.js"]["url"].startswith("https://cdn.jsdelivr.net/")
    monkeypatch.delenv("GPT_ORT_WEB_DIR")
    monkeypatch.setenv("GPT_JS_DIR", str(js_dir))  # one folder serves every library of the page
    assert all(lib["integrity"] is None and lib["url"].startswith("/browser/js/")
               for lib in browser.tfjs_libraries().values())
    assert browser.ort_base() == "/browser/ort/" and browser.local_ort() == js_dir / "node_modules/onnxruntime-web/dist"


def test_the_app_serves_the_pinned_files_alone_and_isolates_its_speed_page(app):
    import urllib.error
    import urllib.request

    with urllib.request.urlopen(app["url"] + "browser/js/tf-backend-wasm.es2017.min.js") as response:
        assert response.headers["Content-Type"].startswith("text/javascript") and len(response.read()) > 100_000
    for path in ("browser/js/package.json", "browser/js/..%2Fpackage-lock.json"):
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(app["url"] + path)
    with urllib.request.urlopen(app["url"] + "browser/train-speed") as response:  # WebAssembly threads need these
        assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"


def test_a_visitor_s_start_trains_in_this_browser_once(minute_run):
    """Starts the one-minute run of the tests below; a second Start at once is refused by the page."""
    panel = minute_run.locator("#browser-run")
    expect(panel).to_contain_text("A run is going in this browser already")
    expect(panel).to_contain_text("Training in this browser", timeout=30_000)
    expect(minute_run.locator("#browser-start")).to_be_disabled()
    expect(minute_run.locator("#browser-stop")).to_be_enabled()


def test_a_fresh_model_has_our_names_shapes_and_initialisation(page, wasm, tmp_path, shakespeare, vocab):
    """The cpu preset's model, initialised in the browser and exported: GPT.from_pretrained loads it strictly,
    and its numbers are drawn as _init_weights draws them."""
    config = TrainConfig.from_preset("cpu").model_config(vocab.vocab_size)
    page.ask(wasm, {"type": "build", "config": asdict(config), "vocab": vocab.chars, "seed": 7})
    page.export(wasm, tmp_path / "fresh")
    model = GPT.from_pretrained(tmp_path / "fresh")
    assert model.config == config and model.vocab == vocab.chars
    reference = GPT(config, vocab.chars)
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        if p.dim() >= 2:  # normal(0, 0.02), as torch draws them
            assert abs(p.std().item() - 0.02) < 0.001 and abs(p.mean().item()) < 0.001, name
        else:  # LayerNorm gains (cpu: no biases)
            assert torch.equal(p, q), name
    X, Y = next(batches(shakespeare, vocab, 1, 4, config.block_size))
    loss, _ = page.loss(wasm, X, Y)
    with torch.no_grad():
        assert abs(loss - model(X, Y)[1].item()) <= 1e-4


def test_loss_and_gradients_equal_pytorch_s_on_webassembly(page, wasm, shakespeare, vocab):
    config = TrainConfig.from_preset("cpu").model_config(vocab.vocab_size)  # 4 layers, 128 wide, block 64
    model = spread_out(config, vocab)
    page.load(wasm, model)
    X, Y = next(batches(shakespeare, vocab, 1, 4, config.block_size, seed=1))
    check_loss_and_gradients(page, wasm, model, X, Y)


def check_small_model(page, worker, shakespeare, vocab):
    """A small model, with biases (the tiny preset's kind): its loss and gradients, and three clipped AdamW steps."""
    config = GPTConfig(vocab_size=vocab.vocab_size, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0)
    model = spread_out(config, vocab, seed=2, std=0.4)
    page.load(worker, model)
    X, Y = next(batches(shakespeare, vocab, 1, 2, 8, seed=2))
    check_loss_and_gradients(page, worker, model, X, Y)
    train = TrainConfig.from_preset("tiny", max_iters=3, warmup_iters=1)
    data = list(batches(shakespeare, vocab, 3, 2, 8, seed=5))
    ours = page_steps(page, worker, data, train)
    expected, norms = pytorch_steps(model, data, train)
    assert min(norms) > train.grad_clip  # clipped at every step
    assert max(abs(a - b) for a, b in zip(ours, expected)) <= 1e-3, list(zip(ours, expected))


def test_loss_gradients_and_steps_equal_pytorch_s_on_webgpu(page, webgpu, shakespeare, vocab):
    check_small_model(page, webgpu, shakespeare, vocab)  # SwiftShader is slow: a small model


def test_loss_gradients_and_steps_equal_pytorch_s_in_plain_javascript(page, plain_js, shakespeare, vocab):
    check_small_model(page, plain_js, shakespeare, vocab)


def test_twenty_adamw_steps_track_pytorch_and_the_export_gives_the_page_s_logits(page, wasm, tmp_path,
                                                                                 shakespeare, vocab):
    """The tiny preset's model and optimisation (AdamW with weight decay on matrices and embeddings, warmup then
    cosine decay, clipping), 20 steps from the same start on the same batches."""
    train = TrainConfig.from_preset("tiny", max_iters=20, warmup_iters=5, batch_size=8)
    torch.manual_seed(3)
    model = GPT(train.model_config(vocab.vocab_size), vocab.chars)
    page.load(wasm, model)
    data = list(batches(shakespeare, vocab, 20, train.batch_size, train.block_size, seed=3))
    ours = page_steps(page, wasm, data, train)
    expected, norms = pytorch_steps(model, data, train)
    assert max(norms) > train.grad_clip > min(norms)  # clipping both bit and stood aside
    assert expected[-1] < expected[0] - 0.5  # it learned something
    assert max(abs(a - b) for a, b in zip(ours, expected)) <= 1e-3, list(zip(ours, expected))

    page.export(wasm, tmp_path / "trained")
    trained = GPT.from_pretrained(tmp_path / "trained")
    X, _ = next(batches(shakespeare, vocab, 1, 2, train.block_size, seed=4))
    with torch.no_grad():
        assert (trained(X)[0] - page.logits(wasm, X)).abs().max().item() <= 1e-4
        assert (trained(X)[0] - model(X)[0]).abs().max().item() <= 1e-2  # and it is the model PyTorch trained


def test_the_export_is_the_weights_moving_average_as_pytorch_keeps_it(page, wasm, tmp_path, shakespeare, vocab):
    """With ema (the cpu preset's 0.95), evaluations and the export use the average of the weights along the way."""
    train = TrainConfig.from_preset("tiny", max_iters=6, warmup_iters=2, batch_size=8, ema=0.8)
    torch.manual_seed(5)
    model = GPT(train.model_config(vocab.vocab_size), vocab.chars)
    page.load(wasm, model)
    data = list(batches(shakespeare, vocab, 6, train.batch_size, train.block_size, seed=5))
    page_steps(page, wasm, data, train)
    average = moving_average(model, train.ema)
    pytorch_steps(model, data, train, average)
    page.export(wasm, tmp_path / "averaged")
    exported = load_file(tmp_path / "averaged" / "model.safetensors")
    assert max((exported[k] - v).abs().max().item() for k, v in average.module.state_dict().items()) <= 1e-5
    assert max((exported[k] - v).abs().max().item() for k, v in model.state_dict().items()) > 1e-3  # not the weights


def test_a_run_reports_steps_evaluations_and_samples_and_stop_ends_it(page, wasm, shakespeare):
    train = TrainConfig.from_preset("tiny", max_iters=40, eval_interval=20, eval_iters=2, sample_length=30)
    settings = asdict(train)
    result = page.page.evaluate("([t, text]) => ask('wasm', {type: 'train', train: t, text})", [settings, shakespeare])
    assert result["event"] == "done" and result["step"] == 40
    events = page.page.evaluate("() => events.wasm.splice(0)")
    assert events[0]["event"] == "start" and events[0]["vocab_size"] == 65 and "WebAssembly" in events[0]["device"]
    steps = [e for e in events if e["event"] == "step"]
    evals = [e for e in events if e["event"] == "eval"]
    assert [e["step"] for e in steps] == list(range(1, 41)) and all(e["tokens_per_sec"] > 0 for e in steps)
    assert [e["step"] for e in evals] == [0, 20, 40]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.5  # it learns
    assert all(len(e["sample"]) == 30 for e in evals) and events[-1]["event"] == "done"

    # a long run: a second Start is refused, Stop ends it between two steps
    long = {**settings, "max_iters": 100_000}
    page.page.evaluate("([t, text]) => { window.longRun = ask('wasm', {type: 'train', train: t, text}); }",
                       [long, shakespeare])
    page.page.wait_for_function("() => events.wasm.filter((e) => e.event === 'step').length >= 3", timeout=30_000)
    with pytest.raises(Exception, match="a run is in progress"):
        page.page.evaluate("([t, text]) => ask('wasm', {type: 'train', train: t, text})", [long, shakespeare])
    assert page.ask(wasm, {"type": "stop"})["running"] is True
    stopped = page.page.evaluate("() => longRun")
    assert stopped["event"] == "stopped" and stopped["step"] < 100


# --- the Train tab's "Train on: this browser", as an anonymous visitor of a public app ---

SAMPLE_HEADING = re.compile(r"^step [\d,]+ · val \d+\.\d{3}$")


def browser_run(tab) -> dict:
    return tab.evaluate("() => gptTrain.state().run")


def ready_to_train(tab, app):
    """The app's page, set to train in this browser with the browser preset (what a visitor who may not train on
    the server gets by default)."""
    tab.goto(app["url"], wait_until="load")
    expect(tab.locator("#train-on input[value='this browser']")).to_be_checked(timeout=30_000)
    expect(tab.locator("#browser-start")).to_be_visible()
    expect(tab.locator("#start-training")).to_be_hidden()  # the server's Start is not offered
    # until this browser has a run, the server's view: a stranger watches the shipped weights' training replayed
    words = tab.locator("#train-progress .in-browser")  # the words for this side of "Train on", shown at once
    expect(words).to_contain_text("or press Start to train your own in this browser")
    expect(words).to_be_visible()
    expect(tab.locator("#train-progress .on-server")).to_be_hidden()
    tab.locator("#train-advanced").click()
    expect(tab.get_by_label("n_embd (width)")).to_have_value("32")  # the browser preset's settings are in the form
    # and the switch to the browser's presets raised nothing on the way (an event that carried the server preset
    # after the menu had narrowed once showed a toast per setting: "cpu is not in the list of choices")
    tab.wait_for_timeout(2000)  # the page's opening events answered
    expect(tab.get_by_test_id("toast-body")).to_have_count(0)


def server_training_calls(app, context, api_name="start_training") -> list[str]:
    """The requests of this Chromium that asked the server to train (start_training's event, by its id), or to do
    what another event does (api_name)."""
    import urllib.request

    with urllib.request.urlopen(app["url"] + "config") as response:
        config = json.loads(response.read())
    ids = {d["id"] for d in config["dependencies"] if d.get("api_name") == api_name}
    assert ids
    return [url for url, body in context.sent if api_name in url or
            ("/queue/join" in url and json.loads(body or "{}").get("fn_index") in ids)]


@pytest.fixture(scope="session")
def minute_run(app, context):
    """A one-minute run in a visitor's browser, started before every other browser test (conftest.py orders them):
    the exactness checks and the other files' browser tests run meanwhile."""
    tab = context.new_page()
    ready_to_train(tab, app)
    tab.locator("#train-minutes input").fill("1")
    tab.locator("#train-minutes input").blur()
    # two Starts in one go: the page starts one run
    tab.evaluate("() => { const start = document.querySelector('#browser-start'); start.click(); start.click(); }")
    yield tab
    tab.close()


@pytest.fixture(scope="session")
def finished_run(minute_run):
    """That run, to its end: (its page, the run as the page holds it)."""
    expect(minute_run.locator("#browser-run")).to_contain_text("Finished in this browser", timeout=150_000)
    return minute_run, browser_run(minute_run)


def test_a_visitor_trains_a_minute_in_the_browser_and_the_server_trains_nothing(app, context, finished_run):
    tab, run = finished_run
    assert run["config"]["max_time"] == 60 and run["config"]["n_embd"] == 32
    assert "WebAssembly" in run["device"]
    assert sum(1 for e in run["log"] if e["event"] == "start") == 1  # the second Start started nothing
    evals = run["evals"]
    assert len(evals) >= 5 and evals[-1]["val_loss"] <= 2.5, [(e["step"], e["val_loss"]) for e in evals]
    assert evals[-1]["elapsed"] <= 62
    headings = tab.locator("#browser-run h4").all_inner_texts()
    assert headings and all(SAMPLE_HEADING.match(h) for h in headings), headings
    assert f"val {evals[-1]['val_loss']:.3f}" in headings[0]  # newest first
    assert re.search(r"[\d,]+ tokens/s", tab.locator("#browser-run .browser-figures").inner_text())
    assert tab.locator("#browser-run polyline").count() == 3  # train (each batch), train and val
    assert server_training_calls(app, context) == []
    expect(tab.locator("#loss-chart")).to_be_hidden()  # the browser's run, not the server's, is in view
    tab.screenshot(path=ARTIFACTS / "browser-train-finished.png", full_page=True)
    tab.set_viewport_size({"width": 390, "height": 844})
    tab.screenshot(path=ARTIFACTS / "browser-train-finished-phone.png", full_page=True)
    tab.set_viewport_size({"width": 1280, "height": 900})
    assert any("/browser/data/tinyshakespeare-" in url for url, _ in context.sent)  # the text came from the app


def test_the_download_loads_in_pytorch_and_scores_as_the_page_said(finished_run, tmp_path, shakespeare):
    tab, run = finished_run
    with tab.expect_download() as download:
        tab.locator("#browser-download").click()
    download.value.save_as(tmp_path / "run.zip")
    with zipfile.ZipFile(tmp_path / "run.zip") as z:
        assert sorted(z.namelist()) == ["config.json", "metrics.jsonl", "model.safetensors"]
        z.extractall(tmp_path / "run")
    model = GPT.from_pretrained(tmp_path / "run")
    data = TextData(shakespeare, CharTokenizer(model.vocab), model.config.block_size)
    with torch.no_grad():
        ours = split_loss(model, data, "val")
    assert abs(ours - run["evals"][-1]["val_loss"]) <= 0.15, (ours, run["evals"][-1]["val_loss"])
    log = runlog.read_log(tmp_path / "run")  # the Runs tab's reader takes its log
    assert [e["step"] for e in log["evals"]] == [e["step"] for e in run["evals"]] and log["end"] == "done"


def test_a_finished_run_survives_a_reload(finished_run):
    tab, run = finished_run
    tab.reload(wait_until="load")
    panel = tab.locator("#browser-run")
    expect(panel).to_contain_text("kept from before the reload", timeout=30_000)
    expect(panel.locator("h4").first).to_have_text(f"step {run['evals'][-1]['step']:,} · val "
                                                  f"{run['evals'][-1]['val_loss']:.3f}")
    expect(panel.locator("#browser-download")).to_be_visible()


def test_the_generate_tab_writes_with_the_run_kept_in_this_browser_as_pytorch_does(app, context, finished_run,
                                                                                  tmp_path):
    """"trained in this browser" on the Generate tab: the kept run's weights in a worker, the page's sampler and
    decode loop; the server is asked for nothing. Greedy, its text is PyTorch's from the Download, past block_size."""

    tab, run = finished_run
    expect(tab.locator("#browser-push")).to_be_hidden()  # Push: for a signed-in visitor only (the last test)
    sent = tab.evaluate("() => gptTrain.upload()")  # what Push hands the server: the kept files, uploaded as named
    assert sorted(Path(f["path"]).name for f in sent) == ["config.json", "metrics.jsonl", "model.safetensors"]
    with tab.expect_download() as download:
        tab.locator("#browser-download").click()
    download.value.save_as(tmp_path / "run.zip")
    zipfile.ZipFile(tmp_path / "run.zip").extractall(tmp_path / "run")
    model = GPT.from_pretrained(tmp_path / "run")
    tab.get_by_role("tab", name="Generate").click()
    weights = tab.get_by_role("combobox", name="Weights")
    weights.click()
    tab.get_by_role("option", name="trained in this browser").click()
    expect(weights).to_have_value("trained in this browser")

    def generate(n, temperature, seed="7"):
        for label, value in (("Characters to generate", n), ("Temperature", temperature)):
            tab.get_by_label(f"number input for {label}").fill(str(value))
            tab.get_by_label(f"number input for {label}").press("Tab")
        tab.get_by_role("textbox", name="Seed").fill(seed)  # the Train tab's Seed is a number
        tab.get_by_label("Prompt").fill("ROMEO:")
        tab.get_by_role("button", name="Generate", exact=True).click()
        expect(tab.locator("#gen-where")).to_contain_text(f"Generated in this browser: {n} characters", timeout=60_000)
        return tab.get_by_label("Generated text").input_value()

    sampled = generate(60, 0.8)
    assert sampled.startswith("ROMEO:") and len(sampled) == 6 + 60 and set(sampled) <= set(model.vocab)
    assert generate(60, 0.8) == sampled  # a seed repeats its text
    weights.evaluate("(e) => e.closest('.block').scrollIntoView()")  # the choice, the settings and the text
    tab.screenshot(path=ARTIFACTS / "browser-generate-trained.png")
    greedy = generate(50, 0)  # 56 characters: the window of 32 is rebuilt from its last half, as the server does
    with torch.no_grad():
        assert greedy == "ROMEO:" + "".join(stream_text(model, "ROMEO:", max_new_tokens=50, temperature=0))
    assert server_training_calls(app, context, "generate") == []


def test_own_text_is_read_in_the_page_refused_with_the_server_s_messages_and_stop_ends_its_run(
        context, finished_run, tmp_path, shakespeare):
    tab, _ = finished_run
    tab.get_by_role("tab", name="Train").click()
    tab.locator("#train-advanced").click()
    expect(tab.get_by_label("n_embd (width)")).to_have_value("32")
    tab.locator("#train-minutes input").fill("0")
    tab.get_by_label("My own text").check()
    file_input = tab.locator("#browser-text input[type=file]")
    expect(file_input).to_be_attached()
    panel = tab.locator("#browser-run")

    (tmp_path / "latin1.txt").write_bytes("Roméo, Roméo!".encode("latin-1"))
    (tmp_path / "short.txt").write_text(shakespeare[:300], encoding="utf-8")
    for name in ("latin1.txt", "short.txt"):
        with pytest.raises(DataError) as server:
            TextData(load_text(tmp_path / name, name=name), CharTokenizer.from_text(shakespeare), 32)
        file_input.set_input_files(tmp_path / name)
        tab.locator("#browser-start").click()
        expect(panel.locator(".browser-error")).to_contain_text(str(server.value), timeout=10_000)
    # a character beyond Tiny Shakespeare's, one beyond 16 bits: one token each, as the server counts them
    text = (shakespeare[:3000] + "Ô moon 🌙\n") * 2
    (tmp_path / "mine.txt").write_text(text, encoding="utf-8")
    file_input.set_input_files(tmp_path / "mine.txt")
    tab.locator("#browser-start").click()  # the preset's 2,000 steps
    tab.wait_for_function("() => (gptTrain.state().run.last || {}).step >= 3", timeout=60_000)
    expect(tab.locator("#browser-start")).to_be_disabled()
    tab.locator("#browser-stop").click()
    expect(panel).to_contain_text("Stopped in this browser", timeout=10_000)
    run = browser_run(tab)
    assert run["log"][-1]["event"] == "stopped" and run["log"][-1]["step"] < 2000
    expect(tab.locator("#browser-start")).to_be_enabled()
    assert run["log"][0]["vocab_size"] == len(set(text))  # code points, as Python counts them
    assert "your text" in panel.inner_text()
    assert not any("mine.txt" in url or "🌙" in body for url, body in context.sent)  # never uploaded


def test_a_start_pressed_as_a_preset_is_chosen_trains_that_preset_however_slow_the_server(finished_run):
    """The menu fills the form in the page, not through the server: with the server's every answer held back 2 s,
    a Start pressed the moment "tiny" is chosen trains tiny's model (2 heads, learning rate 3e-3), not the settings
    the form held a moment before (the browser preset's 4 heads and 1e-2)."""
    tab, _ = finished_run
    tab.get_by_label("Tiny Shakespeare").check()  # the last test left its own text chosen
    tab.locator("#train-minutes input").fill("0")  # the preset's steps: tiny's 100
    tab.locator("#train-minutes input").blur()
    tab.evaluate("""() => { const fetch = window.fetch; window.slowServer = fetch;
        window.fetch = (url, options) => String(url).includes('/queue/join')
            ? new Promise((ok) => setTimeout(ok, 2000)).then(() => fetch(url, options)) : fetch(url, options); }""")
    try:
        tab.evaluate("() => { window.lastRun = gptTrain.state().run; }")
        tab.get_by_label("Preset").click()
        tab.get_by_role("option", name="tiny").click()
        tab.locator("#browser-start").click()
        tab.wait_for_function("() => gptTrain.state().run !== window.lastRun")
        config = browser_run(tab)["config"]
        assert (config["n_head"], config["bias"], config["learning_rate"]) == (2, True, 3e-3), config
        # tiny's 100 steps: a few seconds
        expect(tab.locator("#browser-run")).to_contain_text("Finished in this browser", timeout=60_000)
    finally:
        tab.evaluate("() => { window.fetch = window.slowServer; }")


def test_the_speed_page_measures_this_browser_beside_the_server_s_trainer(app, context, finished_run):
    """The Train tab links to the speed page, whose Measure times the cpu preset's step in this browser and sets it
    beside this server's trainer timed on the same shape (estimate_time's steps)."""
    tab, _ = finished_run
    href = tab.get_by_role("link", name="how fast is this browser?").get_attribute("href")
    page = context.new_page()
    page.goto(app["url"].rstrip("/") + href, wait_until="load")
    assert page.evaluate("() => crossOriginIsolated")  # WebAssembly's threads
    with page.expect_response(re.compile(r"/browser/train-speed/server\.json$")) as asked:
        page.locator("#measure").click()
    sent = asked.value.json()  # what the server answered this page (a later ask may be timed afresh)
    expect(page.locator("#result")).to_contain_text(re.compile(
        r"This browser, WebAssembly \(2 threads\): [\d,]+ tokens/s \([\d.]+ s a step\)\. This server's trainer, .*: "
        r"[\d,]+ tokens/s.*\. This browser trains at [\d.]+x the server's speed\."), timeout=90_000)
    ours, server = re.findall(r"([\d,]+) tokens/s", page.locator("#result").inner_text())
    ratio = float(re.search(r"([\d.]+)x", page.locator("#result").inner_text()).group(1))
    assert abs(ratio - int(ours.replace(",", "")) / int(server.replace(",", ""))) < 0.01
    assert sent["tokens_per_sec"] == pytest.approx(int(server.replace(",", "")), abs=1)
    page.close()


def test_a_browser_whose_webassembly_does_not_start_trains_in_plain_javascript(app, context, finished_run):
    """Where WebAssembly does not start (a browser that turns it off; here its files never arrive), the page trains
    on TF.js's plain-JavaScript backend and says so, rather than not at all. It runs after the speed page's test: the
    other way round, a Chromium renderer stayed busy (about 6% of a core) for the rest of the suite, cause not found."""
    tab = context.new_page()
    refused = []
    tab.route("**/*.wasm", lambda route: (refused.append(route.request.url), route.abort()))
    try:
        tab.goto(app["url"], wait_until="load")
        expect(tab.locator("#train-on input[value='this browser']")).to_be_checked(timeout=30_000)
        tab.locator("#browser-start").click()  # the browser preset (this browser keeps an earlier run: not shown)
        tab.wait_for_function("() => (gptTrain.state().run.last || {}).step >= 1", timeout=60_000)
        assert refused  # WebAssembly was tried first
        expect(tab.locator("#browser-run")).to_contain_text("plain JavaScript")
        assert browser_run(tab)["device"].startswith("plain JavaScript")
        tab.screenshot(path=ARTIFACTS / "browser-train-plain-js.png", full_page=True)
        tab.locator("#browser-stop").click()
        expect(tab.locator("#browser-run")).to_contain_text("Stopped in this browser", timeout=10_000)
    finally:
        tab.close()


# --- Push, as a signed-in visitor of a Space: the run this browser trained, to the visitor's own namespace ---

def test_a_signed_in_visitor_of_a_space_pushes_the_run_their_browser_trained_with_their_own_token(
        space_app, hub_server, chromium, tmp_path):
    """What a person does on a Space (alice's, with her HF_TOKEN as its secret): bob, signed in with Hugging Face,
    trains ten steps in his browser, names a repo, ticks Private and presses Push. The repo is bob's, written with
    his token alone, and holds the run's weights folder and its card; the real huggingface_hub client downloads it
    and GPT.from_pretrained loads it. Signed out, the same page, its run still kept, offers no Push."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    from conftest import OWNER, VISITOR, signed_in_cookie

    url, repo_id = space_app["url"], "bob/pushed-from-the-browser"
    assert ("model", repo_id) not in hub_server.state.repos
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    outside = []  # the page reaches the app alone: TensorFlow.js from the app, never the Hub itself
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url)
                  else (outside.append(route.request.url), route.abort()))
    context.add_cookies([{"name": "session", "value": signed_in_cookie("bob", VISITOR), "url": url}])
    tab = context.new_page()
    try:
        tab.goto(url, wait_until="load")
        expect(tab.locator("#access-notice")).to_contain_text("Signed in as bob.", timeout=30_000)
        expect(tab.locator("#train-on input[value='this browser']")).to_be_checked()  # not the owner: not the server
        push = tab.locator("#browser-push")
        expect(push).to_be_hidden()  # nothing kept in this browser yet
        tab.locator("#train-advanced").click()
        expect(tab.get_by_label("n_embd (width)")).to_have_value("32")  # the browser preset is in the form
        tab.locator("#train-minutes input").fill("0")
        tab.get_by_label("Iterations").fill("10")
        tab.get_by_label("Eval every").fill("5")
        tab.locator("#browser-start").click()
        expect(tab.locator("#browser-run")).to_contain_text("Finished in this browser", timeout=60_000)
        run = browser_run(tab)
        assert [e["step"] for e in run["evals"]] == [0, 5, 10] and run["config"]["n_embd"] == 32

        tab.get_by_label("Push this run to the Hub: model repo").fill(repo_id)
        push.get_by_label("Private").check()
        seen = len(hub_server.state.requests)
        push.get_by_role("button", name="Push to the Hub").click()
        result = tab.locator("#browser-push-result")
        expect(result).to_contain_text(re.compile("Pushed|Error"), timeout=60_000)  # a refusal fails at once
        expect(result).to_contain_text(f"Pushed the run trained in this browser to {repo_id}")
        expect(result).to_contain_text("(once they have access: it is private)")
        result.scroll_into_view_if_needed()
        tab.screenshot(path=ARTIFACTS / "browser-train-pushed.png", full_page=True)

        # on the Hub: bob's repo, private, written with bob's token and never the Space's
        repo = hub_server.state.repos[("model", repo_id)]
        assert repo.owner == "bob" and repo.private
        assert {"model.safetensors", "config.json", "README.md", "metrics.jsonl"} <= set(repo.files_at("main")[1])
        sent = [(method, path, next((v for k, v in headers.items() if k.lower() == "authorization"), None))
                for method, path, headers in hub_server.state.requests[seen:]]
        assert any(method == "POST" and path == f"/api/models/{repo_id}/commit/main" and auth == f"Bearer {VISITOR}"
                   for method, path, auth in sent), sent
        assert {auth for _, _, auth in sent if auth} == {f"Bearer {VISITOR}"}
        assert not any(OWNER in str(headers) for _, _, headers in hub_server.state.requests[seen:])

        # the real client downloads it with bob's token (not without one: it is private), and PyTorch loads it
        with pytest.raises(RepositoryNotFoundError):
            snapshot_download(repo_id, cache_dir=tmp_path / "anonymous")
        folder = Path(snapshot_download(repo_id, token=VISITOR, cache_dir=tmp_path / "hf"))
        model = GPT.from_pretrained(folder)
        config = run["config"]
        assert [getattr(model.config, k) for k in ("n_layer", "n_head", "n_embd", "block_size")] == \
            [config[k] for k in ("n_layer", "n_head", "n_embd", "block_size")]
        assert len(model.vocab) == run["log"][0]["vocab_size"]
        log = runlog.read_log(folder)  # this run's own log: its evaluations as the page showed them
        assert [(e["step"], round(e["val_loss"], 6)) for e in log["evals"]] == \
            [(e["step"], round(e["val_loss"], 6)) for e in run["evals"]] and log["end"] == "done"
        assert repo_id in (folder / "README.md").read_text(encoding="utf-8")  # the card names its repo

        # signed out, the same browser still keeps the run (Download), and is offered no Push
        tab.get_by_role("button", name="Logout (bob)").click()
        expect(tab.locator("#access-notice")).to_contain_text("You are not signed in.", timeout=30_000)
        expect(tab.locator("#browser-run")).to_contain_text("kept from before the reload", timeout=30_000)
        expect(tab.locator("#browser-download")).to_be_visible()
        tab.wait_for_timeout(500)  # the page's load events answered (Push's among them)
        expect(push).to_be_hidden()
        expect(tab.get_by_label("Push this run to the Hub: model repo")).to_be_hidden()
        # Gradio's own on a Space (its theme's fonts, a look-up of the Space) were refused too; nothing else asked
        assert [u for u in outside if not u.startswith(("https://fonts.googleapis.com/",
                                                        "https://huggingface.co/api/spaces/alice/demo"))] == []
    finally:
        context.close()
