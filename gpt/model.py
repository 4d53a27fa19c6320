"""The decoder-only transformer of "Let's build GPT: from scratch, in code, spelled out".

Names follow the lecture: Head, MultiHeadAttention ("communication"), FeedForward ("computation"), Block,
and GPTLanguageModel that stacks them. Shapes use B (batch), T (time), C (channels, n_embd), nh (heads),
hs (head size). This file knows nothing of files, the Hub or sampling: gpt.sharing.pretrained adds saving and loading
(`GPT`), gpt.generation.sampling the KV cache and generation.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn import functional as F

from gpt.config import GPTConfig
from gpt.errors import ConfigError

__all__ = ["GPTConfig", "Head", "MultiHeadAttention", "FeedForward", "Block", "GPTLanguageModel", "attention",
           "next_token_loss", "param_count"]


def next_token_loss(logits, targets):
    """Cross-entropy of (B, T, vocab_size) logits against (B, T) next characters; None without targets."""
    if targets is None:
        return None
    B, T, C = logits.shape
    return F.cross_entropy(logits.view(B * T, C), targets.view(B * T))


class Head(nn.Module):
    """One head of self-attention, exactly as in the lecture.

    GPT uses the fused MultiHeadAttention below; this is the reference it is tested against.
    """

    def __init__(self, config: GPTConfig, head_size: int):
        super().__init__()
        self.key = nn.Linear(config.n_embd, head_size, bias=False)
        self.query = nn.Linear(config.n_embd, head_size, bias=False)
        self.value = nn.Linear(config.n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(config.block_size, config.block_size)))
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)  # (B, T, hs)
        q = self.query(x)  # (B, T, hs)
        # attention scores ("affinities"), scaled so softmax stays diffuse at init
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5  # (B, T, hs) @ (B, hs, T) -> (B, T, T)
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))  # the future does not talk to the past
        wei = F.softmax(wei, dim=-1)  # (B, T, T)
        wei = self.dropout(wei)
        v = self.value(x)  # (B, T, hs)
        return wei @ v  # (B, T, T) @ (B, T, hs) -> (B, T, hs)


def written_out(q, k, v, mask=None, dropout_p: float = 0.0):
    """Head's attention for all heads at once, returning `wei` (B, nh, T, T') too; mask as in attention()."""
    T, T_all = q.size(2), k.size(2)
    if mask is None:
        mask = torch.ones(T, T_all, dtype=torch.bool, device=q.device).tril(diagonal=T_all - T)
    wei = (q @ k.transpose(-2, -1)) * k.size(-1) ** -0.5  # (B, nh, T, T')
    wei = wei.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    return F.dropout(wei, dropout_p, training=dropout_p > 0) @ v, wei  # (B, nh, T, hs)


def attention(q, k, v, mask=None, causal: bool = True, dropout_p: float = 0.0):
    """Head's softmax(q·kᵀ / √hs)·v for all heads at once: (B, nh, T, hs) queries over (B, nh, T', hs) keys.

    causal: the lecture's tril mask. mask: a boolean (T, T') or (B, 1, T, T') of what each query may see, from a
    KV cache. Flash attention where the backend has it: the same result as Head's, with less memory.
    """
    if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        if mask is None and causal:
            # training: Head's formula in bf16 (its softmax computes in float32 and rounds once) beats CPU flash
            # attention in both precisions: bf16's backward is 4x slower, and float32 makes the cpu preset's whole
            # step 6-11% longer (python bench/cpu_autocast.py)
            return written_out(q, k, v, None, dropout_p)[0]
        with torch.autocast("cpu", enabled=False):  # a KV cache under autocast: attend in float32
            return attention(q.float(), k.float(), v.float(), mask, causal, dropout_p)
    if q.dtype != k.dtype:  # a float32 cache under bf16 weights (a crowd's decoding step): attend in float32
        return attention(q.to(k.dtype), k, v, mask, causal, dropout_p).to(q.dtype)
    if mask is not None and q.size(2) == 1 and q.device.type == "cpu":
        # decoding: one new position per row over a padded cache. Written out as in Head, in two batched matmuls:
        # CPU flash attention took 2-3x longer over 20 rows' caches (python bench/engine.py)
        B, nh, T, hs = k.shape
        bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~mask, float("-inf"))
        wei = torch.baddbmm(bias.expand(B, nh, 1, T).reshape(B * nh, 1, T), q.reshape(B * nh, 1, hs),
                            k.reshape(B * nh, T, hs).transpose(1, 2), alpha=hs ** -0.5)  # (B*nh, 1, T)
        return torch.bmm(wei.softmax(dim=-1), v.reshape(B * nh, T, hs)).view(B, nh, 1, hs)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None,
                                          dropout_p=dropout_p)


class MultiHeadAttention(nn.Module):
    """Communication: several heads of self-attention in parallel, then a projection.

    All heads at once in one fused QKV matmul; equivalent to the per-head version in the lecture (see Head).
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)  # query, key, value of every head
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # back onto the residual stream
        self.attn_dropout = config.dropout
        self.dropout = nn.Dropout(config.dropout)
        self.keep_wei = False  # gpt.insides.attention sets it for the heatmaps: `wei` is then kept after each forward
        self.wei = None

    def forward(self, x, cache=None):  # (B, T, C) -> (B, T, C)
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # project: each (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
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


class FeedForward(nn.Module):
    """Computation: after the tokens have talked (attention), each one thinks on its own."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias),  # 4x wider inside, as in the paper
            nn.ReLU(),
            nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias),  # projection back onto the residual
            nn.Dropout(config.dropout),
        )

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        return self.net(x)


class Block(nn.Module):
    """Transformer block: communication followed by computation, each on a pre-LayerNorm residual branch."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.sa = MultiHeadAttention(config)
        self.ffwd = FeedForward(config)
        self.ln1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.ln2 = nn.LayerNorm(config.n_embd, bias=config.bias)

    def forward(self, x, cache=None):  # (B, T, C) -> (B, T, C)
        x = x + self.sa(self.ln1(x), cache)  # residual connections keep gradients flowing in deep stacks
        x = x + self.ffwd(self.ln2(x))
        return x


class GPTLanguageModel(nn.Module):
    """Token + position embeddings, n_layer Blocks, a final LayerNorm and the lm_head (the lecture's name).

    `vocab` (the characters, in id order) travels with the weights so a saved model can read and write text.
    """

    def __init__(self, config: GPTConfig, vocab: list[str] | None = None):
        super().__init__()
        if vocab is not None and len(vocab) != config.vocab_size:
            raise ConfigError(f"vocab has {len(vocab)} characters but vocab_size is {config.vocab_size}")
        self.config = config
        self.vocab = list(vocab) if vocab is not None else None
        self.token_embedding_table = nn.Embedding(config.vocab_size, config.n_embd)
        self.position_embedding_table = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)  # final layer norm
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=config.bias)
        self.apply(self._init_weights)

    def _init_weights(self, module):
        # small normal init, as in the lecture: a fresh model predicts close to uniform (loss ~ ln(65) = 4.17)
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None, cache=None):
        """idx (B, T) -> logits (B, T, vocab_size) and the loss against targets (B, T), if given.

        cache (gpt.generation.kv_cache.KVCache) holds earlier positions while generating; it says where idx stands.
        """
        B, T = idx.shape
        if cache is None:
            if T > self.config.block_size:
                raise ValueError(f"context of {T} tokens is longer than block_size ({self.config.block_size}): "
                                 f"positions are learned only up to block_size")
            pos = torch.arange(T, device=idx.device)  # (T,)
        else:
            pos = cache.positions(T)  # (T,) or (B, T): each row where it stands
        tok_emb = self.token_embedding_table(idx)  # (B, T, C)
        pos_emb = self.position_embedding_table(pos)  # (T, C) or (B, T, C)
        x = tok_emb + pos_emb  # (B, T, C)
        for layer, block in enumerate(self.blocks):
            x = block(x, None if cache is None else cache.layer(layer))  # (B, T, C)
        x = self.ln_f(x)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, vocab_size)

        return logits, next_token_loss(logits, targets)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def param_count(config: GPTConfig) -> int:
    """GPTLanguageModel(config).num_params(), worked out from the config alone, without building anything."""
    C, V, b = config.n_embd, config.vocab_size, int(config.bias)
    block = 3 * C * C + (C * C + b * C) + (4 * C * C + b * 4 * C) + (4 * C * C + b * C) + 2 * (C + b * C)
    return V * C + config.block_size * C + config.n_layer * block + (C + b * C) + (C * V + b * V)
