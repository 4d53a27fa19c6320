"""The model's settings (GPTConfig) and how they are written to config.json, beside the weights.

Both the model and the weights I/O import this module; it imports neither, so the arrows point one way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from gpt.errors import ConfigError, GPTError, WeightsError

CONFIG_FILE = "config.json"


def whole_number(name: str, value, low: int = 1, error: type[GPTError] = ConfigError) -> int:
    """value if it is an int of at least low, else the error saying what name must be."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise error(f"{name} must be a whole number of at least {low}, not {value!r}")
    return value


MAX_SEED = 2**64 - 1  # torch.manual_seed takes 64 bits


def check_seed(value, error: type[GPTError] = ConfigError) -> int:
    """value if torch can seed with it, else the error saying what a seed may be."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise error(f"seed must be a whole number from 0 to {MAX_SEED} (2**64 - 1), not {value!r}")
    return value


@dataclass
class GPTConfig:
    vocab_size: int = 65  # distinct characters in Tiny Shakespeare
    block_size: int = 256  # maximum context length for predictions
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.2
    bias: bool = True  # biases in Linear layers and LayerNorms (nn.Linear's default, as in the lecture)

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            whole_number(name, getattr(self, name))
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                f"each head gets n_embd / n_head channels"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be a number from 0 up to (not including) 1, not {self.dropout!r}")
        if not isinstance(self.bias, bool):
            raise ConfigError(f"bias must be true or false, not {self.bias!r}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head


CONFIG_FIELDS = [f.name for f in fields(GPTConfig)]


def config_json(config: GPTConfig, vocab: list[str], **extra) -> str:
    """config.json text: one setting per line, the vocabulary (characters in id order) on a line of its own."""
    text = json.dumps({**{k: getattr(config, k) for k in CONFIG_FIELDS}, **extra}, indent=2)
    return text[:-2] + f',\n  "vocab": {json.dumps(vocab, ensure_ascii=False)}\n}}\n'


def read_raw_config(folder: str | Path) -> tuple[GPTConfig, list[str], dict]:
    """(GPTConfig, vocabulary, every key of the file) of a weights folder, or a WeightsError saying why not ours."""
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise WeightsError(f"{folder} has no {CONFIG_FILE}: it is not a weights folder of this project")
    return parse_config(path.read_bytes(), path)


def parse_config(data: bytes, path) -> tuple[GPTConfig, list[str], dict]:
    """(GPTConfig, vocabulary, every key) of config.json's bytes; path names the file in errors."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise WeightsError(f"{path} should hold a JSON object, not {type(raw).__name__}")
    missing = [k for k in CONFIG_FIELDS + ["vocab"] if k not in raw]
    if missing:
        raise WeightsError(f"{path} lacks {', '.join(missing)}: these are not weights saved by this project")
    try:
        config = GPTConfig(**{k: raw[k] for k in CONFIG_FIELDS})
    except ConfigError as e:
        raise WeightsError(f"{path} has an invalid setting: {e}") from None
    vocab = raw["vocab"]
    if (not isinstance(vocab, list) or not all(isinstance(c, str) and len(c) == 1 for c in vocab)
            or len(set(vocab)) != len(vocab)):
        raise WeightsError(f"{path}: vocab must be a list of distinct single characters")
    if len(vocab) != config.vocab_size:
        raise WeightsError(f"{path}: vocab has {len(vocab)} characters but vocab_size is {config.vocab_size}")
    return config, vocab, raw


def read_config(folder: str | Path) -> tuple[GPTConfig, list[str]]:
    """(GPTConfig, vocabulary) of a folder of GPT weights; the lecture ladder's earlier rungs are refused."""
    config, vocab, raw = read_raw_config(folder)
    check_gpt(raw, folder)
    return config, vocab


def check_gpt(raw: dict, where) -> None:
    """A WeightsError unless config.json's keys describe a GPT (the lecture ladder's earlier rungs are not)."""
    rung = raw.get("rung", 6)
    if rung not in (6, 7):
        raise WeightsError(f"{where} holds rung {rung} of the lecture ladder, not a GPT: load it with "
                           f"gpt.ladder.rungs.load()")
