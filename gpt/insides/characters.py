"""Inside the model: the distribution the next character is drawn from, and the characters' embedding map.

The lecture's generate is four lines: logits, softmax, multinomial, append. next_characters shows the second and
third: the softmax of the last position's logits, and the distribution sample() really draws from after temperature,
top-k and top-p (the same function, sampling.ranked_probabilities). character_map shows the token embedding
table, `nn.Embedding(vocab_size, n_embd)`, projected onto its first two principal components.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gpt.generation.decode import encode_prompt
from gpt.generation import sampling
from gpt.generation.sampling import Settings

SHOWN = 10  # the ten most likely next characters


@dataclass(frozen=True)
class NextCharacter:
    """One candidate for the next character: its softmax probability (temperature 1, nothing cut) and its
    probability after the settings (what sample() draws with)."""
    char: str
    softmax: float
    probability: float


@torch.no_grad()
def next_logits(model: torch.nn.Module, prompt: str) -> torch.Tensor:
    """(vocab_size,) logits of the character after prompt (its last block_size characters; empty: a new line, as
    generation starts). UnknownCharactersError names characters the model does not know."""
    _, ids = encode_prompt(model, prompt)
    device = next(model.parameters()).device
    idx = torch.tensor([ids[-model.config.block_size:]], device=device)  # (1, T)
    model.eval()
    logits, _ = model(idx)  # (1, T, vocab_size)
    return logits[0, -1, :].float()  # the last position: the lecture's `logits[:, -1, :]`


def next_characters(model: torch.nn.Module, prompt: str, settings: Settings, n: int = SHOWN) -> list[NextCharacter]:
    """The n most likely characters after prompt, most likely first, with their probabilities."""
    logits = next_logits(model, prompt)[None]  # (1, V)
    softmax = sampling.probabilities(logits, [Settings()])[0]  # (V,): the plain softmax, temperature 1
    probs, order = sampling.ranked_probabilities(logits, [settings])  # (1, V) each: what sample() draws from
    return [NextCharacter(model.vocab[i], float(softmax[i]), float(p))
            for p, i in zip(probs[0, :n].tolist(), order[0, :n].tolist())]


@dataclass(frozen=True)
class CharacterMap:
    """Each character's embedding vector projected onto the table's first two principal components."""
    chars: list[str]
    x: list[float]
    y: list[float]
    explained: tuple[float, float]  # the share of the table's variance along each axis


@torch.no_grad()
def character_map(model: torch.nn.Module) -> CharacterMap:
    """PCA of the token embedding table (vocab_size, n_embd) by SVD, with a deterministic sign: each axis points
    so that the character farthest along it lies on its positive side (the same weights, the same picture)."""
    table = model.token_embedding_table.weight.detach().float().cpu()  # (V, C)
    centred = table - table.mean(dim=0)  # (V, C)
    _, S, Vh = torch.linalg.svd(centred, full_matrices=False)  # S (min(V, C),), Vh (min(V, C), C)
    points = centred @ Vh[:2].T  # (V, 2)
    farthest = points.abs().argmax(dim=0)  # (2,)
    points = points * torch.sign(points[farthest, torch.arange(2)])  # (V, 2)
    share = S**2 / (S**2).sum()
    return CharacterMap(list(model.vocab), points[:, 0].tolist(), points[:, 1].tolist(),
                        (float(share[0]), float(share[1])))
