"""Training text: Tiny Shakespeare (downloaded once, checksum verified) or any UTF-8 file, as batches of windows."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

import torch

from gpt.errors import DataError
from gpt.tokenizer import CharTokenizer

TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINY_SHAKESPEARE_ENV = "TINYSHAKESPEARE_PATH"  # a local copy, used instead of downloading
SHAKESPEARE = "shakespeare"  # the name --data accepts for the default corpus


def cache_dir() -> Path:
    root = os.environ.get("GPT_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gpt-from-scratch"
    return Path(root)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tiny_shakespeare_path(path: str | Path | None = None) -> Path:
    """A verified copy of Tiny Shakespeare: the given path, $TINYSHAKESPEARE_PATH, the cache, or a download."""
    local = path or os.environ.get(TINY_SHAKESPEARE_ENV)
    if local:
        local = Path(local).expanduser()
        if not local.is_file():
            raise DataError(f"Tiny Shakespeare was expected at {local} (from ${TINY_SHAKESPEARE_ENV}), but no file is there")
        if sha256(local) != TINY_SHAKESPEARE_SHA256:
            raise DataError(f"{local} is not Tiny Shakespeare: its sha256 does not match {TINY_SHAKESPEARE_SHA256}")
        return local
    cached = cache_dir() / "tinyshakespeare" / "input.txt"
    if cached.is_file() and sha256(cached) == TINY_SHAKESPEARE_SHA256:
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".download-{os.getpid()}")  # per process: torchrun workers may race
    try:
        urllib.request.urlretrieve(TINY_SHAKESPEARE_URL, tmp)
    except OSError as e:
        raise DataError(
            f"could not download Tiny Shakespeare from {TINY_SHAKESPEARE_URL} ({e}). Download it by hand and "
            f"set {TINY_SHAKESPEARE_ENV}=/path/to/input.txt, or train on your own text with --data my.txt"
        ) from None
    if sha256(tmp) != TINY_SHAKESPEARE_SHA256:
        tmp.unlink(missing_ok=True)
        raise DataError(f"the download from {TINY_SHAKESPEARE_URL} failed its sha256 check; try again later")
    os.replace(tmp, cached)
    return cached


MIN_DISTINCT_CHARS = 5  # fewer is not text a model can learn from (5,000 NUL bytes would be a one-letter "language")


def load_text(source: str | Path | None = None, max_bytes: int | None = None, name: str | None = None) -> str:
    """The training text: None or "shakespeare" for Tiny Shakespeare, else the path of a UTF-8 text file.

    name: how messages call the file (an upload's own name rather than where the server keeps it).
    """
    if source is None or str(source) == SHAKESPEARE:
        return tiny_shakespeare_path().read_text(encoding="utf-8")
    path = Path(source).expanduser()
    shown = name or str(path)
    if not path.is_file():
        raise DataError(f"no text file at {shown}")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise DataError(f"{shown} is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB")
    if size == 0:
        raise DataError(f"{shown} is empty: give a text to learn from")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{shown} is not UTF-8 text (byte {e.start} cannot be decoded); save it as UTF-8") from None
    distinct = len(set(text))
    if distinct < MIN_DISTINCT_CHARS:
        raise DataError(f"{shown} has only {distinct} distinct character{'s' if distinct != 1 else ''}; a text to "
                        f"learn from needs at least {MIN_DISTINCT_CHARS}")
    return text


class TextData:
    """The lecture's data pipeline: encode every character, first 90% train, last 10% val, random windows."""

    def __init__(self, text: str, tokenizer: CharTokenizer, block_size: int, device="cpu"):
        data = torch.tensor(tokenizer.encode(text), dtype=torch.long)
        n = int(0.9 * len(data))  # first 90% will be train, rest val
        self.splits = {"train": data[:n], "val": data[n:]}
        self.block_size = block_size
        self.device = torch.device(device)
        if self.device.type == "cuda":  # a few MB: kept on the GPU, a batch is gathered there from its offsets
            self.splits = {split: d.to(self.device) for split, d in self.splits.items()}
        if len(self.splits["val"]) <= block_size:
            raise DataError(
                f"the text has {len(text):,} characters; with block_size {block_size} its last 10% (the validation "
                f"split) must be longer than {block_size} characters, so give at least {10 * (block_size + 1) + 10:,} "
                f"characters or a smaller block_size"
            )

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator | None = None):
        """x, y of shape (B, T): y is x shifted one character to the left, the next-character targets."""
        data = self.splits[split]
        ix = torch.randint(len(data) - self.block_size, (batch_size,), generator=generator)  # on the CPU: same
        # batches on every device for a seed
        if self.device.type == "cuda":  # pinned, the offsets' copy never waits for the GPU's work
            ix = ix.pin_memory().to(self.device, non_blocking=True)
        windows = data.unfold(0, self.block_size + 1, 1)[ix]  # (B, T+1), one gather instead of a Python loop
        x, y = windows[:, :-1].contiguous(), windows[:, 1:].contiguous()  # (B, T), (B, T)
        return x.to(self.device), y.to(self.device)
