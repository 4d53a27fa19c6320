"""The decoder-only transformer of "Let's build GPT: from scratch, in code, spelled out".

Names follow the lecture: Head, MultiHeadAttention ("communication"), FeedForward ("computation"), Block,
and the GPT that stacks them. Shapes use B (batch), T (time), C (channels, n_embd), nh (heads), hs (head size).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn
from huggingface_hub import PyTorchModelHubMixin
from torch.nn import functional as F

from gpt.errors import ConfigError


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
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number of at least 1, not {value!r}")
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


class KVCache:
    """Keys and values of the positions seen so far, so each new token costs one position, not the window."""

    def __init__(self, config: GPTConfig, batch_size: int, device=None, dtype=torch.float32):
        shape = (config.n_layer, batch_size, config.n_head, config.block_size, config.head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0  # positions filled; GPT.forward advances it after all layers have appended

    def append(self, layer: int, k, v):  # k, v: (B, nh, T, hs) -> all keys, values so far (B, nh, pos+T, hs)
        end = self.pos + k.size(2)
        self.k[layer, :, :, self.pos : end] = k
        self.v[layer, :, :, self.pos : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


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

    def forward(self, x, cache: KVCache | None = None, layer: int = 0):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # each (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        mask, causal = None, True
        if cache is not None:
            past = cache.pos
            k, v = cache.append(layer, k, v)  # (B, nh, past+T, hs)
            causal = past == 0 and T > 1  # a prefill from an empty cache is plain causal attention
            if past > 0 and T > 1:  # new token i sees every cached position and the new ones up to itself
                mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            # past > 0 and T == 1: one new token may look at everything: no mask at all
        dropout_p = self.attn_dropout if self.training else 0.0
        # flash attention where the backend has it: same result as the tril/softmax of Head, less memory
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # under CPU bf16 autocast, flash attention's backward is 4x slower in bf16 than in fp32: attend in fp32
            with torch.autocast("cpu", enabled=False):
                y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask,
                                                   is_causal=causal, dropout_p=dropout_p)  # (B, nh, T, hs)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                               dropout_p=dropout_p)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # concatenate the heads: (B, T, C)
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

    def forward(self, x, cache: KVCache | None = None, layer: int = 0):  # (B, T, C) -> (B, T, C)
        x = x + self.sa(self.ln1(x), cache, layer)  # residual connections keep gradients flowing in deep stacks
        x = x + self.ffwd(self.ln2(x))
        return x


class GPT(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="gpt-from-scratch",
    tags=["gpt-from-scratch", "character-level", "text-generation"],
    pipeline_tag="text-generation",
    license="mit",
):
    """Token + position embeddings, n_layer Blocks, a final LayerNorm and the lm_head.

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

    def forward(self, idx, targets=None, cache: KVCache | None = None):
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(
                f"context of {start + T} tokens is longer than block_size ({self.config.block_size}): "
                f"positions are learned only up to block_size"
            )
        tok_emb = self.token_embedding_table(idx)  # (B, T, C)
        pos_emb = self.position_embedding_table(torch.arange(start, start + T, device=idx.device))  # (T, C)
        x = tok_emb + pos_emb  # (B, T, C)
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)  # (B, T, C)
        if cache is not None:
            cache.pos += T
        x = self.ln_f(x)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, vocab_size)

        return logits, next_token_loss(logits, targets)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- weights: our own safetensors + config.json format, through huggingface_hub's mixin ---

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, revision: str | None = None,
                        token: str | None = None, map_location: str = "cpu", **kwargs) -> "GPT":
        """Load from a weights folder or a Hub repo id. Raises WeightsError saying what is wrong."""
        from gpt import weights

        folder = weights.locate(pretrained_model_name_or_path, revision=revision, token=token)
        weights.read_config(folder)  # a clear error before the mixin builds anything from a foreign config
        return super().from_pretrained(folder, map_location=map_location, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, map_location: str = "cpu", **unused) -> "GPT":
        from gpt import weights

        model = cls(*weights.read_config(model_id))  # our own strict reading of config.json
        model.load_state_dict(weights.read_state_dict(Path(model_id), model), strict=True)
        return model.to(map_location).eval()

    def _save_pretrained(self, save_directory: Path) -> None:
        from gpt import weights

        weights.save_weights(self, save_directory)

    def config_dict(self) -> dict:
        """What config.json holds: the GPTConfig fields and the vocabulary, characters in id order."""
        return {**asdict(self.config), "vocab": self.vocab}


CONFIG_FIELDS = [f.name for f in fields(GPTConfig)]
