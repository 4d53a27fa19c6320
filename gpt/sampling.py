"""Sampling: the next token of every row from its logits, each row with its own settings and random generator.

One sampler serves every way of generating (a single stream, several samples, the engine's crowd, the command
line, a training run's samples), so a seed gives the same text whichever of them asked. A new setting is added
to Settings and to sample(), then to the user interfaces and the command line; nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from gpt.config import check_seed, whole_number
from gpt.errors import SamplingError


@dataclass(frozen=True)
class Settings:
    """How a row's next token is drawn. temperature 0 is greedy; top_k 0/None and top_p 1/None are off."""
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self):
        t, k, p = self.temperature, self.top_k, self.top_p
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 100:
            raise SamplingError(f"temperature must be between 0 (greedy) and 100, not {t!r}")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 0):
            raise SamplingError(f"top_k must be a whole number (0 or empty = off), not {k!r}")
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1):
            raise SamplingError(f"top_p must be above 0 and at most 1 (1 = off), not {p!r}")


def check_request(max_new_tokens, seed=None, num_samples=1) -> None:
    """The parts of a request that are not sampling settings; a SamplingError says what is wrong."""
    whole_number("max_new_tokens", max_new_tokens, 0, SamplingError)
    whole_number("num_samples", num_samples, 1, SamplingError)
    if seed is not None:
        check_seed(seed, SamplingError)


def seeded(seed: int | None, device=None) -> torch.Generator:
    """A private generator: the seed's, or a fresh random one. The global RNG is never touched."""
    generator = torch.Generator(device=device or "cpu")
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def sample(logits: torch.Tensor, settings: list[Settings], generators: list[torch.Generator]) -> list[int]:
    """(n, vocab_size) logits -> n token ids, row i with settings[i] and generators[i].

    Temperature, then top-k, then top-p (nucleus: the smallest set of most likely tokens whose probabilities add
    up to top_p; the most likely is always kept), done for every row at once: one step of a crowd costs a few
    small ops, not a few per visitor. Each row draws one uniform number from its own generator and picks its
    token by the inverse of its distribution; every op works row by row, so a row's token never depends on the
    others.
    """
    n, V = logits.shape
    device = logits.device
    table = torch.tensor([[s.temperature or 1.0, min(s.top_k or V, V), 1.0 if s.top_p is None else s.top_p]
                          for s in settings], device=device)  # (n, 3)
    temperature, top_k, top_p = table[:, :1], table[:, 1:2], table[:, 2:]
    u = torch.cat([torch.rand(1, generator=g, device=g.device) for g in generators]).to(device)  # (n,)
    sorted_logits, order = torch.sort(logits.float() / temperature, dim=-1, descending=True, stable=True)  # (n, V)
    sorted_logits = sorted_logits.masked_fill(torch.arange(V, device=device) >= top_k, float("-inf"))  # top-k
    probs = F.softmax(sorted_logits, dim=-1)
    probs = probs.masked_fill((probs.cumsum(dim=-1) - probs >= top_p) & (top_p < 1), 0.0)  # top-p
    cdf = probs.cumsum(dim=-1)  # (n, V)
    pick = torch.searchsorted(cdf, (u[:, None] * cdf[:, -1:]).contiguous(), right=True).clamp(max=V - 1)  # (n, 1)
    tokens = order.gather(1, pick).squeeze(1)  # (n,)
    greedy = torch.tensor([s.temperature == 0 for s in settings], device=device)
    return torch.where(greedy, logits.argmax(dim=-1), tokens).tolist()
