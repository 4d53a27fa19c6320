"""What generating past block_size costs in quality and buys in speed, for each KV-cache rebuild length.

    python bench/rebuild.py [--weights weights/default] [--stride 4]

When the window is full, the cache is rebuilt from the last `rebuild` characters, so the model then predicts
with every context length from `rebuild` to block_size in turn. The quality of that is the validation loss
averaged over exactly those context lengths (measured on overlapping windows of the validation split); the
lecture's sliding window always uses the full block_size (rebuild=block_size).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gpt import GPT, CharTokenizer  # noqa: E402
from gpt.data import TextData, load_text  # noqa: E402
from gpt.generation.decode import generate_tokens  # noqa: E402


@torch.no_grad()
def loss_by_context(model: GPT, val: torch.Tensor, stride: int) -> torch.Tensor:
    """loss[c - 1]: mean val loss when the model sees c characters of context."""
    T = model.config.block_size
    starts = torch.arange(0, len(val) - T - 1, stride)
    total = torch.zeros(T)
    for i in range(0, len(starts), 256):
        s = starts[i:i + 256]
        x = torch.stack([val[j:j + T] for j in s])  # (B, T)
        y = torch.stack([val[j + 1:j + T + 1] for j in s])  # (B, T)
        logits, _ = model(x)
        total += F.cross_entropy(logits.transpose(1, 2), y, reduction="none").sum(0)
    return total / len(starts)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", default="weights/default")
    parser.add_argument("--stride", type=int, default=4, help="start a window every N characters of val")
    args = parser.parse_args()
    model = GPT.from_pretrained(args.weights)
    T = model.config.block_size
    val = TextData(load_text(), CharTokenizer(model.vocab), T).splits["val"]
    loss = loss_by_context(model, val, args.stride)
    idx = torch.zeros(1, 1, dtype=torch.long)
    print(f"{'rebuild':>8} {'val loss of the contexts used':>30} {'tokens/s (2000, batch 1)':>26}")
    for rebuild in sorted({T // 4, T // 2, 3 * T // 4, T}):
        list(generate_tokens(model, idx, 50, seed=0, rebuild=rebuild))  # warm up
        t = time.perf_counter()
        list(generate_tokens(model, idx, 2000, seed=0, rebuild=rebuild))
        rate = 2000 / (time.perf_counter() - t)
        print(f"{rebuild:>8} {loss[rebuild - 1:].mean().item():>30.4f} {rate:>26,.0f}")


if __name__ == "__main__":
    main()
