import os
import socket
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VOCAB = list("\n !',.:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")  # a vocabulary for small test models
SHARED_COPY = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"

# Before anything imports huggingface_hub: no telemetry, no calls out, nothing written to the real cache, and
# the Hub is the local protocol stand-in of tests/hub_server.py (started by the hub_server fixture on this port).
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ["HF_HUB_DISABLE_XET"] = "1"  # the stand-in speaks classic LFS, not Xet
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="hf-home-")
os.environ.pop("HF_TOKEN", None)  # a real token never reaches the stand-in
with socket.socket() as _s:
    _s.bind(("127.0.0.1", 0))
    HUB_PORT = _s.getsockname()[1]
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{HUB_PORT}"
if "TINYSHAKESPEARE_PATH" not in os.environ:
    if SHARED_COPY.is_file():
        os.environ["TINYSHAKESPEARE_PATH"] = str(SHARED_COPY)
    else:  # a newcomer's machine: download once, as the project does on first use, and reuse it
        from gpt.data import tiny_shakespeare_path

        os.environ["TINYSHAKESPEARE_PATH"] = str(tiny_shakespeare_path())


def pytest_collection_modifyitems(session, config, items):
    """Browser tests selected: find or install Chromium now, or stop at once saying what to install."""
    from browser_setup import BrowserMissing, ensure_chromium

    if any(item.path.name == "test_browser.py" for item in items):
        try:
            os.environ["CHROMIUM"] = ensure_chromium()
        except BrowserMissing as e:
            pytest.exit(str(e), returncode=1)


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("GPT_CACHE_DIR", str(home / "gpt"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))


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


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """`python app.py` on a free port, as a user starts it, with its own weights folder (a copy of the default)."""
    import shutil
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    folder = tmp_path_factory.mktemp("app")
    shutil.copytree(ROOT / "weights" / "default", folder / "weights" / "default")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GPT_WEIGHTS_DIR": str(folder / "weights"), "PYTHONUNBUFFERED": "1"}
    log = open(folder / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"app.py did not start: {(folder / 'app.log').read_text()}")
            time.sleep(0.3)
    yield {"url": url, "weights": folder / "weights", "log": folder / "app.log"}
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


TOKENS = {"hf_alice_write_0123456789": ("alice", "write"), "hf_alice_read_0123456789": ("alice", "read"),
          "hf_bob_write_0123456789": ("bob", "write")}


@pytest.fixture(scope="session")
def hub_server():
    """The Hub protocol stand-in at HF_ENDPOINT, with users alice (write and read tokens) and bob."""
    from tests.hub_server import HubServer

    server = HubServer(HUB_PORT, TOKENS).start()
    yield server
    server.shutdown()
