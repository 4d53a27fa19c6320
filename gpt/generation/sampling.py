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


def ranked_probabilities(logits: torch.Tensor, settings: list[Settings]) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, vocab_size) logits -> (probs, order), each (n, vocab_size): the distribution row i's next token is drawn
    from, most likely first (probs[i, j] is the probability of token order[i, j]).

    The lecture's `probs = F.softmax(logits, dim=-1)`, reshaped by the settings: temperature, then top-k, then top-p
    (nucleus: the smallest set of most likely tokens whose probabilities add up to top_p; the most likely is always
    kept). Temperature 0 is greedy: the most likely token alone (a top-k of 1). sample() draws from exactly this, and
    gpt.insides.characters shows it: one function, so what is shown is what is drawn from. Done for every row at once: one step
    of a crowd costs a few small ops, not a few per visitor; every op works row by row.
    """
    n, V = logits.shape
    device = logits.device
    table = torch.tensor([[s.temperature or 1.0, min(s.top_k or V, V) if s.temperature else 1,
                           1.0 if s.top_p is None else s.top_p] for s in settings], device=device)  # (n, 3)
    temperature, top_k, top_p = table[:, :1], table[:, 1:2], table[:, 2:]
    sorted_logits, order = torch.sort(logits.float() / temperature, dim=-1, descending=True, stable=True)  # (n, V)
    sorted_logits = sorted_logits.masked_fill(torch.arange(V, device=device) >= top_k, float("-inf"))  # top-k
    probs = F.softmax(sorted_logits, dim=-1)
    probs = probs.masked_fill((probs.cumsum(dim=-1) - probs >= top_p) & (top_p < 1), 0.0)  # top-p
    return probs / probs.sum(dim=-1, keepdim=True), order


def probabilities(logits: torch.Tensor, settings: list[Settings]) -> torch.Tensor:
    """(n, vocab_size) logits -> (n, vocab_size) probabilities in the vocabulary's order (ranked_probabilities')."""
    probs, order = ranked_probabilities(logits, settings)
    return torch.zeros_like(probs).scatter(1, order, probs)


def sample(logits: torch.Tensor, settings: list[Settings], generators: list[torch.Generator]) -> list[int]:
    """(n, vocab_size) logits -> n token ids, row i with settings[i] and generators[i].

    The lecture's `torch.multinomial(probs, num_samples=1)`, from ranked_probabilities' distribution: each row draws
    one uniform number from its own generator and picks its token by the inverse of its distribution, so a row's
    token never depends on the others.
    """
    V = logits.shape[1]
    u = torch.cat([torch.rand(1, generator=g, device=g.device) for g in generators]).to(logits.device)  # (n,)
    probs, order = ranked_probabilities(logits, settings)  # (n, V) each, most likely first
    cdf = probs.cumsum(dim=-1)  # (n, V)
    pick = torch.searchsorted(cdf, (u[:, None] * cdf[:, -1:]).contiguous(), right=True).clamp(max=V - 1)  # (n, 1)
    return order.gather(1, pick).squeeze(1).tolist()
