"""The lecture ladder: the model improved one idea at a time, in the lecture's order, with the val loss it quotes.

Rungs 1-5 are the lecture's intermediate models, written here with the package's building blocks (Head,
MultiHeadAttention, FeedForward); rung 6 is already our GPT (pre-LayerNorm blocks, final LayerNorm) at the
lecture's small size, and rung 7 is GPT at the lecture's final size. GPT itself has no switches for any of this.
Every rung trains with the same Trainer and saves in the same weights format (config.json gains a "rung").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from gpt import weights
from gpt.config import GPTConfig
from gpt.errors import WeightsError
from gpt.memory import check_loadable
from gpt.model import Head, MultiHeadAttention, next_token_loss
from gpt.presets import LECTURE_VAL
from gpt.pretrained import GPT
from gpt.trainer import TrainConfig

# the lecture's small settings for rungs 1-6: block 8, batch 32, 32 channels, lr 1e-3 held constant, 5000 steps
SMALL = dict(block_size=8, batch_size=32, n_embd=32, n_head=4, n_layer=3, dropout=0.0, bias=True,
             learning_rate=1e-3, min_lr=1e-3, warmup_iters=0, max_iters=5000, eval_interval=500, eval_iters=200,
             weight_decay=0.01, beta2=0.999, grad_clip=0.0, sample_length=100,
             dtype="float32")  # the lecture's precision, so its numbers compare like with like


@dataclass
class Rung:
    number: int
    name: str
    change: str  # what this rung adds, in the lecture's words
    lecture_val: float  # the validation loss the lecture quotes
    settings: dict = field(default_factory=lambda: dict(SMALL))


RUNGS = [
    Rung(1, "bigram", "a lookup table of next-character logits", 2.5,
         dict(SMALL, learning_rate=1e-2, min_lr=1e-2, max_iters=3000, eval_interval=300)),  # as bigram.py
    Rung(2, "self-attention head", "one head of self-attention, with token and position embeddings", 2.4),
    Rung(3, "multi-head attention", "4 heads of a quarter the size, in parallel", 2.28),
    Rung(4, "feed-forward", "computation after communication: a feed-forward layer after attention", 2.24),
    Rung(5, "residual blocks", "3 blocks with residual connections and projections", 2.08),
    Rung(6, "layer norm", "LayerNorm before attention and feed-forward, and a final one", 2.06),
    Rung(7, "scaled up", "6 layers, 6 heads, 384 wide, block 256, batch 64, dropout 0.2",
         LECTURE_VAL, dict(SMALL, block_size=256, batch_size=64, n_embd=384, n_head=6, n_layer=6, dropout=0.2,
                    learning_rate=3e-4, min_lr=3e-4, sample_length=200)),
]


class LadderModel(nn.Module):
    """What the rungs before GPT share: the config, the vocabulary and the weights format."""

    rung = 0

    def __init__(self, config: GPTConfig, vocab: list[str] | None = None):
        super().__init__()
        self.config, self.vocab = config, list(vocab) if vocab is not None else None

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class BigramLanguageModel(LadderModel):
    """Rung 1: each token reads the logits for the next token straight off a lookup table."""

    rung = 1

    def __init__(self, config, vocab=None):
        super().__init__(config, vocab)
        self.token_embedding_table = nn.Embedding(config.vocab_size, config.vocab_size)

    def forward(self, idx, targets=None):
        logits = self.token_embedding_table(idx)  # (B, T, vocab_size)
        return logits, next_token_loss(logits, targets)


class Heads(nn.Module):
    """The lecture's first multi-head attention: heads side by side, concatenated, no projection yet."""

    def __init__(self, config, num_heads, head_size):
        super().__init__()
        self.heads = nn.ModuleList([Head(config, head_size) for _ in range(num_heads)])

    def forward(self, x):  # (B, T, C) -> (B, T, num_heads * head_size)
        return torch.cat([h(x) for h in self.heads], dim=-1)


class ResidualBlock(nn.Module):
    """Rung 5's block: x + communication, then x + computation (4x wide, projected back); no LayerNorm yet."""

    def __init__(self, config):
        super().__init__()
        self.sa = MultiHeadAttention(config)  # all heads at once, with the projection
        self.ffwd = nn.Sequential(nn.Linear(config.n_embd, 4 * config.n_embd), nn.ReLU(),
                                  nn.Linear(4 * config.n_embd, config.n_embd))

    def forward(self, x):
        x = x + self.sa(x)
        return x + self.ffwd(x)


# what sits between the embeddings and lm_head at each rung, in the order the lecture adds it
BODIES = {
    2: lambda c: Head(c, c.n_embd),  # one head as wide as the embedding
    3: lambda c: Heads(c, 4, c.n_embd // 4),
    4: lambda c: nn.Sequential(Heads(c, 4, c.n_embd // 4), nn.Linear(c.n_embd, c.n_embd), nn.ReLU()),
    5: lambda c: nn.Sequential(*[ResidualBlock(c) for _ in range(c.n_layer)]),
}


class AttentionLanguageModel(LadderModel):
    """Rungs 2-5: token + position embeddings, then the rung's body, then lm_head."""

    def __init__(self, config, vocab=None, rung=2):
        super().__init__(config, vocab)
        self.rung = rung
        self.token_embedding_table = nn.Embedding(config.vocab_size, config.n_embd)
        self.position_embedding_table = nn.Embedding(config.block_size, config.n_embd)
        self.body = BODIES[rung](config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        tok_emb = self.token_embedding_table(idx)  # (B, T, C)
        pos_emb = self.position_embedding_table(torch.arange(T, device=idx.device))  # (T, C)
        x = self.body(tok_emb + pos_emb)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, vocab_size)
        return logits, next_token_loss(logits, targets)


def train_config(rung: Rung, **overrides) -> TrainConfig:
    return TrainConfig(**{**rung.settings, **overrides})


def build(rung: int, config: GPTConfig, vocab: list[str] | None = None) -> nn.Module:
    """The model of a rung, from the GPTConfig its TrainConfig gives."""
    if rung == 1:
        return BigramLanguageModel(config, vocab)
    if rung in BODIES:
        return AttentionLanguageModel(config, vocab, rung)
    return GPT(config, vocab)  # rungs 6 and 7: the full model


def load(folder: str | Path) -> nn.Module:
    """Any rung's saved weights (GPT.from_pretrained also reads rungs 6 and 7)."""
    config, vocab, raw = weights.read_raw_config(folder)
    check_loadable(config, "cpu", Path(folder) / weights.CONFIG_FILE, WeightsError)  # the GPT's size bounds every rung
    model = build(raw.get("rung", 6), config, vocab)
    model.load_state_dict(weights.read_state_dict(folder, model))
    return model.eval()
