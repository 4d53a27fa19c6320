import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_COPY = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"

# Before anything imports huggingface_hub: no telemetry, no calls out, nothing written to the real cache.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
if "TINYSHAKESPEARE_PATH" not in os.environ:
    if SHARED_COPY.is_file():
        os.environ["TINYSHAKESPEARE_PATH"] = str(SHARED_COPY)
    else:  # a newcomer's machine: download once, as the project does on first use, and reuse it
        from gpt.data import tiny_shakespeare_path

        os.environ["TINYSHAKESPEARE_PATH"] = str(tiny_shakespeare_path())


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
