"""The ladder's second flight: ideas from after the lecture, one per rung, on the lecture's GPT.

Each idea is a small class beside the one it replaces (RotaryAttention beside MultiHeadAttention, and so on),
written out in full where it differs, so that a diff of the two (gpt.ladder.rung_code) is exactly the lines the idea
adds. GPT itself stays the lecture's: these models are built only for the rungs that add them (gpt.ladder.rungs).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn import functional as F

from gpt.config import GPTConfig
from gpt.model import Block, FeedForward, MultiHeadAttention, attention, next_token_loss, written_out
from gpt.sharing.pretrained import GPT


def rotate(x, cos, sin):
    """Rotary position embedding: turn each pair of channels of x (B, nh, T, hs) by its position's angle."""
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class RotaryAttention(MultiHeadAttention):
    """Attention where position is a rotation of queries and keys (RoPE), not a learned vector added to x:
    the score of two characters then depends on how far apart they are, not on where they stand."""

    def __init__(self, config):
        super().__init__(config)
        hs = config.n_embd // config.n_head
        inv_freq = 1.0 / (10000 ** (torch.arange(0, hs, 2).float() / hs))  # (hs/2,) from fast to slow turns
        angles = torch.outer(torch.arange(config.block_size).float(), inv_freq)  # (block_size, hs/2)
        self.register_buffer("cos", angles.cos(), persistent=False)  # computed, never saved
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x, cache=None, pos=None):  # (B, T, C) -> (B, T, C)
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # project: each (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        cos, sin = self.cos[pos], self.sin[pos]  # (T, hs/2), or (B, T, hs/2) for rows at their own positions
        if pos.dim() == 2:
            cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, hs/2): the same turn for every head
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)  # where each character stands
        mask = None
        if cache is not None:  # generating: the keys and values of earlier positions come from the cache
            k, v, mask = cache.update(k, v)  # (B, nh, T', hs) and what each new position may see
        if self.keep_wei:  # the same attention written out as in Head, keeping `wei` for the heatmaps
            y, self.wei = written_out(q, k, v, mask)
        else:
            y = attention(q, k, v, mask, causal=cache is None,
                          dropout_p=self.attn_dropout if self.training else 0.0)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # merge: the heads side by side again, (B, T, C)
        return self.dropout(self.proj(y))


class QKNormAttention(RotaryAttention):
    """Rotary attention with each head's queries and keys normalised (QK-norm): their dot products can no longer
    grow without bound, so softmax cannot saturate and a higher learning rate stays stable."""

    def __init__(self, config):
        super().__init__(config)
        hs = config.n_embd // config.n_head
        self.q_norm = nn.RMSNorm(hs)
        self.k_norm = nn.RMSNorm(hs)

    def forward(self, x, cache=None, pos=None):  # (B, T, C) -> (B, T, C)
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # project: each (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        q, k = self.q_norm(q), self.k_norm(k)  # each head's queries and keys at unit scale (times a learned gain)
        cos, sin = self.cos[pos], self.sin[pos]  # (T, hs/2), or (B, T, hs/2) for rows at their own positions
        if pos.dim() == 2:
            cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, hs/2): the same turn for every head
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)  # where each character stands
        mask = None
        if cache is not None:  # generating: the keys and values of earlier positions come from the cache
            k, v, mask = cache.update(k, v)  # (B, nh, T', hs) and what each new position may see
        if self.keep_wei:  # the same attention written out as in Head, keeping `wei` for the heatmaps
            y, self.wei = written_out(q, k, v, mask)
        else:
            y = attention(q, k, v, mask, causal=cache is None,
                          dropout_p=self.attn_dropout if self.training else 0.0)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # merge: the heads side by side again, (B, T, C)
        return self.dropout(self.proj(y))


class ReLUSquared(nn.Module):
    def forward(self, x):
        return F.relu(x).square()


class ReLUSquaredFeedForward(nn.Module):
    """Computation with relu(x)² instead of relu(x): as cheap, smooth at 0, and steeper for large activations."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias),  # 4x wider inside, as in the paper
            ReLUSquared(),
            nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias),  # projection back onto the residual
            nn.Dropout(config.dropout),
        )

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        return self.net(x)


class BeyondBlock(Block):
    """A Block whose attention is told where each character stands (rotary attention needs it)."""

    def __init__(self, config, attention_class, feedforward_class):
        super().__init__(config)
        self.sa, self.ffwd = attention_class(config), feedforward_class(config)

    def forward(self, x, cache=None, pos=None):  # (B, T, C) -> (B, T, C)
        x = x + self.sa(self.ln1(x), cache, pos)  # residual connections keep gradients flowing in deep stacks
        x = x + self.ffwd(self.ln2(x))
        return x


# what each architecture rung of the second flight builds with (gpt.ladder.rungs.RUNGS says what each adds)
ATTENTION = {11: RotaryAttention, 12: QKNormAttention, 13: QKNormAttention, 14: QKNormAttention}
FEEDFORWARD = {11: FeedForward, 12: FeedForward, 13: ReLUSquaredFeedForward, 14: ReLUSquaredFeedForward}


class BeyondGPT(GPT):
    """GPT with rotary positions (no position table), and the later rungs' attention and feed-forward."""

    def __init__(self, config, vocab=None, rung: int = 11):
        super().__init__(config, vocab)
        self.rung = rung
        del self.position_embedding_table  # positions are rotations inside attention now
        self.blocks = nn.ModuleList([BeyondBlock(config, ATTENTION[rung], FEEDFORWARD[rung])
                                     for _ in range(config.n_layer)])
        self.apply(self._init_weights)

    def forward(self, idx, targets=None, cache=None):
        B, T = idx.shape
        if cache is None:
            if T > self.config.block_size:
                raise ValueError(f"context of {T} tokens is longer than block_size ({self.config.block_size}): "
                                 f"the rotations are tabled only up to block_size")
            pos = torch.arange(T, device=idx.device)  # (T,)
        else:
            pos = cache.positions(T)  # (T,) or (B, T): each row where it stands
        x = self.token_embedding_table(idx)  # (B, T, C): no position vector is added
        for layer, block in enumerate(self.blocks):
            x = block(x, None if cache is None else cache.layer(layer), pos)  # (B, T, C)
        x = self.ln_f(x)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, vocab_size)
        return logits, next_token_loss(logits, targets)
