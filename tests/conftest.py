import atexit
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from serve import free_port, serving

ROOT = Path(__file__).resolve().parent.parent
VOCAB = list("\n !',.:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")  # a vocabulary for small test models
SHARED_COPY = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"

# Before anything imports huggingface_hub: no telemetry, no calls out, nothing written to the real cache, and
# the Hub is the local protocol stand-in of tests/hub_server.py (started by the hub_server fixture on this port).
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ["HF_HUB_DISABLE_XET"] = "1"  # the stand-in speaks classic LFS, not Xet
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="hf-home-")
os.environ["GPT_CACHE_DIR"] = tempfile.mkdtemp(prefix="gpt-cache-")  # precision choices: shared by this run only
for scratch in (os.environ["HF_HOME"], os.environ["GPT_CACHE_DIR"]):
    atexit.register(shutil.rmtree, scratch, True)  # each process of a run (three with the workers) its own
os.environ.pop("HF_TOKEN", None)  # a real token never reaches the stand-in
# One torch thread a process (this one and every app, command line and engine it starts, before torch is
# imported): they share two cores with Chromium, and two OpenMP threads a process spin against the others. A tiny
# 40-step run on a busy 2-core machine took 45-80 s with two threads, 2.5-5 s with one.
os.environ.setdefault("OMP_NUM_THREADS", "1")
HUB_PORT = free_port()
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{HUB_PORT}"
if "TINYSHAKESPEARE_PATH" not in os.environ:
    if SHARED_COPY.is_file():
        os.environ["TINYSHAKESPEARE_PATH"] = str(SHARED_COPY)
    else:  # a newcomer's machine: download once, as the project does on first use, and reuse it
        from gpt.data import tiny_shakespeare_path

        os.environ["TINYSHAKESPEARE_PATH"] = str(tiny_shakespeare_path())


# the device the GPU-relevant tests (test_device.py, test_trainer.py) run on: cpu, or cuda where bench/gpu.py points
# the suite at a GPU. Asked for and missing, the run stops at once rather than testing the CPU twice.
TEST_DEVICE = os.environ.get("GPT_TEST_DEVICE", "cpu")


@pytest.fixture(scope="session")
def device() -> str:
    import torch

    if TEST_DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.exit(f"GPT_TEST_DEVICE={TEST_DEVICE}, but PyTorch sees no CUDA GPU here", returncode=1)
    if TEST_DEVICE == "mps" and not torch.backends.mps.is_available():
        pytest.exit("GPT_TEST_DEVICE=mps, but Apple MPS is not available here", returncode=1)
    return TEST_DEVICE


def small_gpt(*, seed: int = 0, weight_std: float | None = None, dtype=None, **overrides):
    """A small GPT over VOCAB (block 16, 2 layers, 2 heads, 32 wide, no dropout), in eval mode.

    weight_std redraws the matrices wider than the usual init, so that the next token depends strongly on the
    context (a fresh model predicts the same token everywhere).
    """
    import torch

    from gpt import GPT, GPTConfig

    torch.manual_seed(seed)
    settings = dict(vocab_size=len(VOCAB), block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    model = GPT(GPTConfig(**{**settings, **overrides}), VOCAB).to(dtype or torch.float32)
    if weight_std:
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() >= 2:
                    p.normal_(0, weight_std)
    return model.eval()


def run_main(main, *argv) -> subprocess.CompletedProcess:
    """A command line's main(argv) run in this process, as its console script runs it: (exit status, stdout,
    stderr), without the ~3 s a new Python takes to import torch. Each command still gets one real subprocess in
    tests/test_cli.py, test_install.py and test_setup.py; the signal handlers a training command sets are put back."""
    import contextlib
    import io
    import signal

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as e:  # argparse: --help, or a usage error
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
    return subprocess.CompletedProcess(list(argv), code, out.getvalue(), err.getvalue())


def in_browser_file(path) -> bool:
    """tests/test_browser*.py: the files whose tests drive Chromium (marked `browser`, run together on one worker)."""
    return Path(path).name.startswith("test_browser")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    """Every test of a test_browser*.py file is marked `browser`: `-m "not browser"` is the quick loop."""
    for item in items:
        if in_browser_file(item.path):
            item.add_marker(pytest.mark.browser)
    # The browser tests first, so that the rest runs beside them. The visitor's one-minute run in the browser
    # (test_browser_train.py) starts before the other browser tests and is read after them: they run in the minute
    # it trains, instead of the suite waiting it out.
    browser = [item for item in items if item.get_closest_marker("browser")]
    early = [item for item in browser if item.path.name == "test_browser_train.py"
             and "finished_run" not in item.fixturenames]
    items[:] = early + [item for item in browser if item not in early] + [i for i in items if i not in browser]


@pytest.hookimpl(optionalhook=True)  # without pytest-xdist (the bare GPU machine of bench/gpu.py) it is not a hook
def pytest_xdist_make_scheduler(config, log):
    """The two workers of pytest.ini: every browser test on one, in the order above (one Chromium, one set of apps,
    the minute's run beside the others); each other file on whichever worker is free (its module fixtures once)."""
    from xdist.scheduler import LoadFileScheduling

    class BrowserTogether(LoadFileScheduling):
        def _split_scope(self, nodeid):
            return "browser" if in_browser_file(nodeid.split("::")[0]) else super()._split_scope(nodeid)

    return BrowserTogether(config, log)


def pytest_collection_finish(session):
    """Browser tests selected: find or install Chromium now, or stop at once saying what to install."""
    from browser_setup import BrowserMissing, ensure_chromium

    if any(item.get_closest_marker("browser") for item in session.items):
        try:
            os.environ["CHROMIUM"] = ensure_chromium()
        except BrowserMissing as e:
            pytest.exit(str(e), returncode=1)


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("GPT_CACHE_DIR", str(home / "gpt"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    # and the precision choices this process remembers: timed under an earlier test's load, they could differ from
    # what a command line started now measures, and a seed would then give two texts
    precision = sys.modules.get("gpt.generation.precision")
    if precision:
        monkeypatch.setattr(precision, "_FASTEST", {})


@pytest.fixture(scope="session")
def shakespeare() -> str:
    path = Path(os.environ["TINYSHAKESPEARE_PATH"])
    assert path.is_file(), f"Tiny Shakespeare not found at {path}: set TINYSHAKESPEARE_PATH"
    return path.read_text(encoding="utf-8")


@pytest.fixture
def small_text(tmp_path, shakespeare) -> Path:
    """A small UTF-8 text, as a user would give with --data: the first 60,000 characters of Shakespeare."""
    path = tmp_path / "small.txt"
    path.write_text(shakespeare[:60_000], encoding="utf-8")
    return path


@contextmanager
def running_app(folder: Path, env_extra: dict | None = None):
    """`python app.py` on a free port, as a user starts it, with its own weights folder (a copy of the default)."""
    shutil.copytree(ROOT / "weights" / "default", folder / "weights" / "default")
    with serving(weights=folder / "weights", env=env_extra, log=folder / "app.log", timeout=90) as app:
        yield {"url": app.url, "weights": folder / "weights", "log": folder / "app.log"}


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """The app as on a laptop: one trusted user, everything allowed."""
    with running_app(tmp_path_factory.mktemp("app")) as app:
        yield app


TOKENS = {"hf_alice_write_0123456789": ("alice", "write"), "hf_alice_read_0123456789": ("alice", "read"),
          "hf_bob_write_0123456789": ("bob", "write")}


@pytest.fixture(scope="session")
def hub_server():
    """The Hub protocol stand-in at HF_ENDPOINT, with users alice (write and read tokens) and bob."""
    from tests.hub_server import HubServer

    server = HubServer(HUB_PORT, TOKENS).start()
    yield server
    server.shutdown()


OWNER, VISITOR = "hf_alice_write_0123456789", "hf_bob_write_0123456789"  # alice owns the Space
OAUTH_SECRET = "test-oauth-client-secret"  # as the Space platform sets it: the session cookie's key comes from it


@pytest.fixture(scope="session")
def space_app(hub_server, tmp_path_factory, request):
    """The app started exactly as a Space starts it: alice's Space, her HF_TOKEN as a secret, "Sign in with
    Hugging Face" switched on (hf_oauth: true), the Hub stand-in as the Hub. The provider is never reached:
    tests sign in by presenting a session cookie, as the Space's /login/callback would have set it. With browser
    tests selected it serves the page's pinned libraries itself (GPT_JS_DIR), as public_app: a visitor trains in
    their browser there (test_browser_train.py); the quick loop (-m "not browser") needs no npm."""
    env = {"SYSTEM": "spaces", "SPACE_ID": "alice/demo", "SPACE_AUTHOR_NAME": "alice", "SPACE_REPO_NAME": "demo",
           "SPACE_HOST": "alice-demo.hf.space", "HF_TOKEN": OWNER, "OAUTH_CLIENT_ID": "test-client",
           "OAUTH_CLIENT_SECRET": OAUTH_SECRET, "OAUTH_SCOPES": "openid profile read-repos write-repos manage-repos",
           "OPENID_PROVIDER_URL": "http://127.0.0.1:9/not-reached"}
    if any(item.get_closest_marker("browser") for item in request.session.items):
        env["GPT_JS_DIR"] = str(request.getfixturevalue("js_dir"))
    with running_app(tmp_path_factory.mktemp("space"), env) as app:
        yield app


def signed_in_cookie(user: str, token: str) -> str:
    """The session cookie Gradio sets after "Sign in with Hugging Face" (itsdangerous-signed, as on a Space)."""
    import base64
    import hashlib
    import json

    import itsdangerous

    info = {"access_token": token, "token_type": "bearer", "scope": "openid profile write-repos manage-repos",
            "expires_at": int(time.time()) + 3600,
            "userinfo": {"sub": user, "name": user.title(), "preferred_username": user,
                         "profile": f"https://huggingface.co/{user}", "picture": ""}}
    key = hashlib.sha256((OAUTH_SECRET + "-v4").encode()).hexdigest()
    return itsdangerous.TimestampSigner(key).sign(base64.b64encode(json.dumps({"oauth_info": info}).encode())).decode()


ARTIFACTS = Path(os.environ.get("ARTIFACTS_DIR", ROOT / "artifacts"))  # the browser tests' screenshots


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for every browser test; each test opens contexts of its own. WebGPU is offered (on a
    software adapter here) for the browser training's checks."""
    from playwright.sync_api import sync_playwright

    from browser_setup import LAUNCH_ARGS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:  # CHROMIUM: found or installed by pytest_collection_finish above
        browser = p.chromium.launch(executable_path=os.environ["CHROMIUM"], headless=True,
                                    args=[*LAUNCH_ARGS, "--enable-unsafe-webgpu"])
        yield browser
        browser.close()


JS = ROOT / "tests" / "js"  # package.json and package-lock.json: the JavaScript the tests run, pinned


def npm_ci(folder: Path, packages: list[str]) -> Path:
    """`npm ci` of folder's package-lock.json (from the registry; CI reaches it), unless its node_modules already
    holds these packages. The JavaScript the tests run is pinned there, never fetched at run time."""
    modules = folder / "node_modules"
    with open(folder / ".npm-ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker may want the same folder: one npm ci at a time
        if not all((modules / name / "package.json").is_file() for name in packages):
            npm = shutil.which("npm")
            assert npm and shutil.which("node"), "the JavaScript tests need Node.js and npm: apt-get install nodejs npm"
            result = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=folder,
                                    capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, result.stdout + result.stderr
    return modules


@pytest.fixture(scope="session")
def node_modules():
    """tests/js: transformers.js and onnxruntime-web from npm, as package-lock.json pins them (installed once)."""
    return npm_ci(JS, ["@huggingface/transformers"])


PAGE_JS = ROOT / "webapp" / "js"  # the page's package.json and package-lock.json


@pytest.fixture(scope="session")
def js_dir():
    """webapp/js with `npm ci` of its lockfile run in it: what GPT_JS_DIR names (installed once, from the registry)."""
    npm_ci(PAGE_JS, ["@tensorflow/tfjs", "fflate", "onnxruntime-web"])
    return PAGE_JS


@pytest.fixture(scope="session")
def public_app(tmp_path_factory, js_dir):
    """A public app (every visitor a stranger) that serves the page's pinned libraries itself (GPT_JS_DIR): where
    the browser tests generate and train in the visitor's browser."""
    with running_app(tmp_path_factory.mktemp("public"), {"GPT_PUBLIC": "1", "GPT_JS_DIR": str(js_dir)}) as app:
        yield app
