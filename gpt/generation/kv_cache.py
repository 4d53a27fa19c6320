"""The KV cache: keys and values of the positions seen so far, so each new token costs one position, not the window.

KVCache serves one forward of any number of rows that all stand at the same position (a prompt, a rebuild);
RowCache holds many streams, each at its own position, for gpt.generation.decode.Batch.
"""

from __future__ import annotations

import torch

from gpt.config import GPTConfig


class LayerCache:
    """One layer's keys and values, (B, nh, block_size, hs), filled up to `pos`."""

    def __init__(self, shape: tuple[int, ...], device, dtype):
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0

    def update(self, k, v):
        """Append T new positions (B, nh, T, hs); return every key and value so far and what each new one sees."""
        past, T = self.pos, k.size(2)
        self.k[:, :, past:past + T] = k
        self.v[:, :, past:past + T] = v
        self.pos += T
        # new token i sees every cached position and the new ones up to itself; a single new token sees everything
        mask = None if T == 1 else torch.ones(T, past + T, dtype=torch.bool, device=k.device).tril(diagonal=past)
        return self.k[:, :, :past + T], self.v[:, :, :past + T], mask


class KVCache:
    """Keys and values of the positions seen so far, so each new token costs one position, not the window."""

    def __init__(self, config: GPTConfig, batch_size: int, device=None, dtype=torch.float32):
        shape = (batch_size, config.n_head, config.block_size, config.head_size)
        self.layers = [LayerCache(shape, device, dtype) for _ in range(config.n_layer)]
        self.block_size = config.block_size
        self.device = device

    @property
    def pos(self) -> int:
        """Positions filled so far (every layer agrees between two forward passes)."""
        return self.layers[-1].pos

    def positions(self, T: int) -> torch.Tensor:
        """The positions of T new tokens, (T,): right after those already cached."""
        if self.pos + T > self.block_size:
            raise ValueError(f"context of {self.pos + T} tokens is longer than block_size ({self.block_size}): "
                             f"positions are learned only up to block_size")
        return torch.arange(self.pos, self.pos + T, device=self.device)

    def layer(self, i: int) -> LayerCache:
        return self.layers[i]

    def reset(self) -> None:
        for layer in self.layers:
            layer.pos = 0


class RowCache:
    """Keys and values of up to `rows` streams, each at its own position: (n_layer, rows, nh, block_size, hs).

    Rows stay in a fixed padded layout and each new token attends through a per-row mask over the whole block,
    so a row's arithmetic has the same shapes whichever other rows share the forward pass.
    """

    def __init__(self, config: GPTConfig, rows: int, device=None, dtype=torch.float32):
        shape = (config.n_layer, rows, config.n_head, config.block_size, config.head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = torch.zeros(rows, dtype=torch.long, device=device)  # (rows,) positions filled in each row
        self.block_size = config.block_size

    def rows(self, lo: int, hi: int) -> "CacheRows":
        """Rows lo..hi-1, as the cache argument of GPTLanguageModel.forward for one new token per row."""
        return CacheRows(self, lo, hi)

    def fill(self, row: int, cache: KVCache) -> None:
        """Put a one-row KVCache (a prefill) into `row`."""
        T = cache.pos
        for i, layer in enumerate(cache.layers):
            self.k[i, row, :, :T] = layer.k[0, :, :T]
            self.v[i, row, :, :T] = layer.v[0, :, :T]
        self.pos[row] = T

    def move(self, src: int, dst: int) -> None:
        """Copy row src into row dst (a stream left: the last row takes its place, so rows stay 0..n-1)."""
        self.k[:, dst] = self.k[:, src]
        self.v[:, dst] = self.v[:, src]
        self.pos[dst] = self.pos[src]


class CacheRows:
    """A slice of a RowCache that the model's forward reads and writes; one new position per row."""

    def __init__(self, cache: RowCache, lo: int, hi: int):
        self.cache, self.lo, self.hi = cache, lo, hi
        pos = cache.pos[lo:hi]  # (B,)
        if bool((pos >= cache.block_size).any()):
            raise ValueError(f"a row is full: positions are learned only up to block_size ({cache.block_size})")
        self.pos = pos
        # (B, 1, 1, block_size): each row sees its filled positions and the new one
        self.mask = (torch.arange(cache.block_size, device=pos.device)[None, :] <= pos[:, None])[:, None, None, :]
        # where each row's and head's new key goes in a layer's (rows * nh * block_size, hs) view: one index_copy_
        nh = cache.k.size(2)
        slots = (torch.arange(lo, hi, device=pos.device)[:, None] * nh + torch.arange(nh, device=pos.device))
        self.slots = (slots * cache.block_size + pos[:, None]).flatten()  # (B * nh,)

    def positions(self, T: int) -> torch.Tensor:  # (B, 1)
        if T != 1:
            raise ValueError("a RowCache takes one new token per row")
        return self.pos[:, None]

    def layer(self, i: int) -> "CacheRows":
        self.i = i
        return self

    def update(self, k, v):
        """Write each row's new key and value (B, nh, 1, hs) at its own position; return the padded rows."""
        dtype = self.cache.k.dtype  # under autocast (a training run's samples) k and v come in bf16
        hs = k.size(-1)
        self.cache.k[self.i].view(-1, hs).index_copy_(0, self.slots, k.reshape(-1, hs).to(dtype))  # (B * nh, hs)
        self.cache.v[self.i].view(-1, hs).index_copy_(0, self.slots, v.reshape(-1, hs).to(dtype))
        return self.cache.k[self.i, self.lo:self.hi], self.cache.v[self.i, self.lo:self.hi], self.mask
