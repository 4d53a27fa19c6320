"""Character-level tokenizer: the lecture's stoi / itos, stored with the weights."""

from __future__ import annotations

from pathlib import Path

from gpt.sharing import weights
from gpt.errors import ConfigError, UnknownCharactersError


class CharTokenizer:
    """Each distinct character of the training text is one token; ids follow sorted order, as in the lecture.

    Policy for unknown characters: encode() raises UnknownCharactersError naming them; it never guesses.
    """

    def __init__(self, chars: list[str] | str):
        chars = list(chars)
        if not chars or not all(isinstance(c, str) and len(c) == 1 for c in chars) or len(set(chars)) != len(chars):
            raise ConfigError("a vocabulary must be a non-empty list of distinct single characters")
        self.chars = chars
        self.stoi = {ch: i for i, ch in enumerate(chars)}
        self.itos = dict(enumerate(chars))

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | Path, *, revision: str | None = None,
                        token: str | None = None) -> "CharTokenizer":
        """The vocabulary saved with a model's weights (a folder or a Hub repo id)."""
        _, vocab = weights.read_config(weights.locate(path_or_repo_id, revision=revision, token=token))
        return cls(vocab)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        """The characters of text that are not in the vocabulary, each once, in order of appearance."""
        return list(dict.fromkeys(c for c in text if c not in self.stoi))

    def encode(self, text: str) -> list[int]:
        unknown = self.unknown(text)
        if unknown:
            raise UnknownCharactersError(unknown, self.vocab_size)
        return [self.stoi[c] for c in text]

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)
