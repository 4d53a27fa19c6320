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

from gpt.ladder import beyond
from gpt.sharing import weights
from gpt.config import GPTConfig
from gpt.errors import ConfigError, WeightsError
from gpt.memory import check_loadable
from gpt.model import Head, MultiHeadAttention, next_token_loss
from gpt.training.presets import LECTURE_VAL
from gpt.sharing.pretrained import GPT
from gpt.training.trainer import TrainConfig

# the lecture's small settings for rungs 1-6: block 8, batch 32, 32 channels, lr 1e-3 held constant, 5000 steps
SMALL = dict(block_size=8, batch_size=32, n_embd=32, n_head=4, n_layer=3, dropout=0.0, bias=True,
             learning_rate=1e-3, min_lr=1e-3, warmup_iters=0, max_iters=5000, eval_interval=500, eval_iters=200,
             weight_decay=0.01, beta2=0.999, grad_clip=0.0, sample_length=100,
             dtype="float32")  # the lecture's precision, so its numbers compare like with like


# the second flight: the lecture's model and recipe at a size that trains in minutes on a CPU (the cpu preset's
# shape), each rung trained for the same wall-clock time, so that an idea that makes steps slower pays for it
BEYOND = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=32, dropout=0.0, bias=True,
              optimizer="adamw", learning_rate=1e-3, min_lr=1e-3, warmup_iters=0, weight_decay=0.01, beta2=0.999,
              grad_clip=0.0, ema=0.0, max_iters=0, max_time=90.0, eval_interval=0, eval_iters=15, sample_length=100,
              dtype="auto")
SCHEDULE = dict(learning_rate=3.5e-3, min_lr=2e-4, warmup_iters=30, weight_decay=0.1, beta2=0.99, grad_clip=1.0)
MUON = dict(optimizer="muon", muon_lr=0.035)


@dataclass
class Rung:
    number: int
    name: str
    change: str  # what this rung adds, in the lecture's words (the second flight: ours)
    lecture_val: float | None  # the validation loss the lecture quotes (None past the lecture)
    settings: dict = field(default_factory=lambda: dict(SMALL))
    flight: str = "lecture"  # or "beyond": after the lecture

    @property
    def why(self) -> str:
        """The idea and why it lowers the loss, in a few sentences of our own (WHY; else what it adds)."""
        return WHY.get(self.number, self.change)

    @property
    def before(self) -> int | None:
        """The rung this one adds its idea to. Rung 11 and up build on 9, not on Muon (10): torch's Muon computes
        in bf16, and on the CPUs we measured on (no native bf16) it bought fewer steps than it saved
        (bench/results/ladder_beyond.json)."""
        return {1: None, 8: 7, 11: 9}.get(self.number, self.number - 1)


# what each rung's idea is and why it lowers the loss, in our words (shown beside its code: gpt.ladder.rung_code)
WHY = {
    1: ('Each character looks up a row of 65 scores for the next one: the table learns which letters follow '
        "which. It sees one character of context, so it cannot spell beyond pairs; what it learns is the text's "
        'letter statistics, and that alone takes the loss from ln 65 = 4.17 to about 2.5.'),
    2: ('Each character can now look back at the ones before it in its block. A head asks a question (query), '
        'each earlier character answers with a key, and the best matches pass on their values. Position '
        'embeddings say where each character stands, since attention alone does not know order. More context, '
        'lower loss.'),
    3: ('Several small heads instead of one wide one, for the same number of weights: each can look for something '
        'different (the previous vowel, the start of the word) and their findings are put side by side.'),
    4: ('After the characters have talked (attention), each thinks on its own about what it gathered: a layer '
        'with a nonlinearity, applied to every position independently.'),
    5: ("Communication and computation repeated in 3 blocks. Residual connections add each block's result to its "
        'input, so gradients flow straight back through the stack and deeper models still train; the feed-forward '
        'layer grows 4x wide inside.'),
    6: ("LayerNorm before attention and feed-forward (and once at the end) keeps every block's input at unit "
        "scale, so the stack trains evenly. This is the lecture's full GPT; the small model gains a little, the "
        'big one a lot.'),
    7: ('The same code, scaled: 6 layers, 6 heads, 384 wide, a 256-character context, dropout against '
        'overfitting. 10.8M parameters take the loss from 2.06 to 1.48: the text starts to look like Shakespeare.'),
    8: ("The start of the second flight: rung 7's model and recipe (constant learning rate 1e-3, AdamW), at the "
        "cpu preset's size, trained for 90 seconds. Every rung after it gets the same 90 s, so an idea that "
        'makes a step slower has to pay for itself.'),
    9: ('A learning rate that starts small (warmup: the first updates are the wildest), peaks 3.5x higher than '
        'the constant one, and decays along a cosine to a twentieth, so the last steps settle into a minimum '
        'instead of bouncing around it. Gradient clipping and more weight decay keep the higher rate safe. No new '
        'weights.'),
    10: ("Muon replaces each matrix's update by the nearest orthogonal matrix (a few Newton-Schulz iterations), so "
        'every direction of the matrix learns at the same speed instead of a few large ones dominating: fewer '
        "steps to the same loss. Embeddings, gains and biases stay with AdamW. torch's Muon computes in bf16: on "
        'a CPU without native bf16 its steps are much slower, and 90 seconds buy fewer of them.'),
    11: ('The position table goes; instead each query and key is rotated by an angle proportional to its position '
        '(RoPE). A dot product of two rotated vectors depends only on how far apart they are, so what a head '
        "learns about 'three characters back' holds at every position, and the table's weights are saved."),
    12: ("Each head's queries and keys are normalised (RMSNorm, with a learned gain) before their dot products, so "
        'attention scores cannot blow up and saturate the softmax; training stays stable at high learning rates.'),
    13: ('relu(x)² instead of relu(x) in the feed-forward layer: as cheap, differentiable at zero, and steeper '
        'for large activations. The nanoGPT speedruns (modded-nanogpt) found it learns faster at small scale.'),
    14: ('Evaluate, sample and keep a moving average of the weights (each step keeps 95% of the average): it '
        "averages away the noise of the last steps' updates, as a decayed learning rate would. No new weights to "
        'train, one copy of them to keep.'),
}

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
    # past the lecture: one idea per rung, on top of the rung before, each for the same 90 seconds (rung 11 on
    # builds on 9: see Rung.before)
    Rung(8, "lecture at CPU size", "the lecture's model and recipe, 4 layers, 128 wide, block 64, for 90 seconds",
         None, dict(BEYOND), flight="beyond"),
    Rung(9, "warmup + cosine", "a learning rate that warms up, peaks higher and decays by cosine; clipping",
         None, dict(BEYOND, **SCHEDULE), flight="beyond"),
    Rung(10, "Muon", "Muon for the matrices inside the Blocks, AdamW for the rest",
         None, dict(BEYOND, **SCHEDULE, **MUON), flight="beyond"),
    Rung(11, "rotary positions", "positions as rotations of queries and keys (RoPE) instead of a learned table",
         None, dict(BEYOND, **SCHEDULE), flight="beyond"),
    Rung(12, "QK-norm", "each head's queries and keys normalised before their dot products",
         None, dict(BEYOND, **SCHEDULE), flight="beyond"),
    Rung(13, "ReLU²", "relu(x)² in the feed-forward instead of relu(x)",
         None, dict(BEYOND, **SCHEDULE), flight="beyond"),
    Rung(14, "weight averaging", "evaluate and keep a moving average of the weights (ema 0.95)",
         None, dict(BEYOND, **SCHEDULE, ema=0.95), flight="beyond"),
]
# RUNGS is the one list: the chart's colours, the code view, the command line and the messages' ranges ("8-14")
# are all read from it, so a rung added here appears everywhere


def flight(name: str) -> list[Rung]:
    """The rungs of one flight: "lecture" (1-7) or "beyond" (8 on)."""
    return [r for r in RUNGS if r.flight == name]


def span(rungs: list[Rung]) -> str:
    """Rungs' numbers as a range for messages: "8-14"."""
    numbers = [r.number for r in rungs]
    return f"{min(numbers)}-{max(numbers)}" if len(numbers) > 1 else str(numbers[0])


def rung(number: int | str) -> Rung:
    """The rung called number (an int, or a page's text of one), or a ConfigError saying which there are."""
    try:
        number = int(number)
    except (TypeError, ValueError):
        pass  # not a number: refused below, as it was written
    found = [r for r in RUNGS if r.number == number]
    if not found:
        raise ConfigError(f"the ladder has rungs {span(RUNGS).replace('-', ' to ')}, not {number!r}")
    return found[0]


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
    if rung in beyond.ATTENTION:
        return beyond.BeyondGPT(config, vocab, rung)
    return GPT(config, vocab)  # rungs 6-10: the lecture's GPT (8-10 change only how it trains)


def load(folder: str | Path) -> nn.Module:
    """Any rung's saved weights (GPT.from_pretrained also reads rungs 6 and 7)."""
    config, vocab, raw = weights.read_raw_config(folder)
    check_loadable(config, "cpu", Path(folder) / weights.CONFIG_FILE, WeightsError)  # the GPT's size bounds every rung
    model = build(raw.get("rung", 6), config, vocab)
    model.load_state_dict(weights.read_state_dict(folder, model))
    return model.eval()
