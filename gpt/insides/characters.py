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
    """Each character's embedding vector projected onto two principal components of a table."""
    chars: list[str]
    x: list[float]
    y: list[float]
    explained: tuple[float, float]  # the share of the table's variance along each axis
    spread: float = 1.0  # the points' root-mean-square distance from their mean, in the table's own units


def _table(model: torch.nn.Module) -> torch.Tensor:
    return model.token_embedding_table.weight.detach().float().cpu()  # (V, C)


def _project(table: torch.Tensor, axes: torch.Tensor, chars: list[str]) -> CharacterMap:
    """table (V, C), centred on its own mean, onto axes (2, C) of unit length."""
    centred = table - table.mean(dim=0)  # (V, C)
    points = centred @ axes.T  # (V, 2)
    total = float((centred**2).sum()) or 1.0
    share = (points**2).sum(dim=0) / total  # (2,)
    spread = float(points.pow(2).sum(dim=1).mean().sqrt())
    return CharacterMap(list(chars), points[:, 0].tolist(), points[:, 1].tolist(),
                        (float(share[0]), float(share[1])), spread)


def principal_axes(table: torch.Tensor) -> torch.Tensor:
    """The (2, C) first two principal directions of a (V, C) table, by SVD, each with a deterministic sign: it
    points so that the character farthest along it lies on its positive side (the same weights, the same picture;
    a table times -1, the same picture too)."""
    centred = table - table.mean(dim=0)  # (V, C)
    _, _, Vh = torch.linalg.svd(centred, full_matrices=False)  # Vh (min(V, C), C)
    axes = Vh[:2]  # (2, C)
    points = centred @ axes.T  # (V, 2)
    farthest = points.abs().argmax(dim=0)  # (2,)
    return axes * torch.sign(points[farthest, torch.arange(2)])[:, None]


@torch.no_grad()
def character_map(model: torch.nn.Module) -> CharacterMap:
    """PCA of the token embedding table (vocab_size, n_embd): each character on the table's first two principal
    components."""
    table = _table(model)
    return _project(table, principal_axes(table), model.vocab)


@torch.no_grad()
def start_map(model: torch.nn.Module, start: torch.Tensor) -> CharacterMap:
    """The table the run began with (step 0, `gpt.sharing.weights.read_start_embedding`) on the axes of the model's own
    map: the same two directions of embedding space, so a character's move between the two maps is what training
    did to it (a random table has no axes of its own worth drawing)."""
    start = start.detach().float().cpu()
    if start.shape != _table(model).shape:
        raise ValueError(f"the step-0 table is {tuple(start.shape)}, the model's {tuple(_table(model).shape)}")
    return _project(start, principal_axes(_table(model)), model.vocab)
