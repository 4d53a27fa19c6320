import functools
import http.server
import threading

import pytest
import torch

from gpt import CharTokenizer, DataError
from gpt import data as data_module
from gpt.data import TINY_SHAKESPEARE_SHA256, TextData, load_text, sha256, tiny_shakespeare_path


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server (the real download code, without the internet) serving files from tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_shared_copy_is_verified_by_checksum():
    path = tiny_shakespeare_path()
    assert sha256(path) == TINY_SHAKESPEARE_SHA256


def test_downloads_once_into_the_cache_and_verifies(monkeypatch, http_server, shakespeare, tmp_path):
    root, url = http_server
    (root / "input.txt").write_text(shakespeare, encoding="utf-8")
    monkeypatch.delenv("TINYSHAKESPEARE_PATH")
    monkeypatch.setattr(data_module, "TINY_SHAKESPEARE_URL", f"{url}/input.txt")
    path = tiny_shakespeare_path()
    assert path.is_relative_to(data_module.cache_dir()) and sha256(path) == TINY_SHAKESPEARE_SHA256
    (root / "input.txt").unlink()  # a second call must not download again
    assert tiny_shakespeare_path() == path
    assert load_text() == shakespeare


def test_a_download_with_the_wrong_checksum_is_rejected_and_not_cached(monkeypatch, http_server):
    root, url = http_server
    (root / "input.txt").write_text("not Shakespeare at all\n" * 100, encoding="utf-8")
    monkeypatch.delenv("TINYSHAKESPEARE_PATH")
    monkeypatch.setattr(data_module, "TINY_SHAKESPEARE_URL", f"{url}/input.txt")
    with pytest.raises(DataError, match="sha256"):
        tiny_shakespeare_path()
    assert not list(data_module.cache_dir().rglob("input.txt"))


def test_unreachable_download_says_what_to_do(monkeypatch, http_server):
    _, url = http_server
    monkeypatch.delenv("TINYSHAKESPEARE_PATH")
    monkeypatch.setattr(data_module, "TINY_SHAKESPEARE_URL", f"{url}/missing.txt")
    with pytest.raises(DataError, match="TINYSHAKESPEARE_PATH"):
        tiny_shakespeare_path()


def test_local_copy_that_is_not_tiny_shakespeare_is_rejected(monkeypatch, tmp_path):
    fake = tmp_path / "input.txt"
    fake.write_text("hello", encoding="utf-8")
    monkeypatch.setenv("TINYSHAKESPEARE_PATH", str(fake))
    with pytest.raises(DataError, match="not Tiny Shakespeare"):
        tiny_shakespeare_path()
    monkeypatch.setenv("TINYSHAKESPEARE_PATH", str(tmp_path / "nowhere.txt"))
    with pytest.raises(DataError, match="no file"):
        tiny_shakespeare_path()


def test_any_utf8_file_can_be_the_text_and_others_are_explained(tmp_path):
    good = tmp_path / "poem.txt"
    good.write_text("Grüße, 世界!\n", encoding="utf-8")
    assert load_text(good) == "Grüße, 世界!\n"
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Grüße".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_text(bad)
    with pytest.raises(DataError, match="no text file"):
        load_text(tmp_path / "missing.txt")


def test_batches_are_random_windows_with_next_character_targets(shakespeare):
    tok = CharTokenizer.from_text(shakespeare)
    data = TextData(shakespeare, tok, block_size=8)
    assert len(data.splits["train"]) == 1_003_854 and len(data.splits["val"]) == 111_540  # 90 / 10
    x, y = data.get_batch("val", 4, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 8) and x.dtype == torch.long
    val_text = shakespeare[1_003_854:]
    for row_x, row_y in zip(x, y):
        assert torch.equal(row_y[:-1], row_x[1:])  # y is x shifted by one
        assert tok.decode(row_x.tolist() + row_y[-1:].tolist()) in val_text  # 9 consecutive val characters


def test_too_short_text_is_explained():
    text = "To be, or not to be: that is the question.\n" * 5
    with pytest.raises(DataError, match="block_size 256"):
        TextData(text, CharTokenizer.from_text(text), block_size=256)
