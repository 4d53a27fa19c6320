"""Loss over a whole split, deterministically: `python -m gpt.evaluate --weights weights/default`.

The trainer's estimate_loss samples random windows (as in the lecture); this walks the entire split in
consecutive block_size windows, so the same weights always get the same number.
"""

from __future__ import annotations

import argparse
import sys

import torch

from gpt.data import SHAKESPEARE, TextData, load_text
from gpt.device import pick_device
from gpt.errors import command
from gpt.sharing.pretrained import GPT
from gpt.tokenizer import CharTokenizer
from gpt.sharing.weights import default_weights


@torch.no_grad()
def split_loss(model: GPT, data: TextData, split: str = "val", batch_size: int = 64) -> float:
    """Mean next-character cross-entropy over every consecutive block_size window of the split."""
    model.eval()
    T = model.config.block_size
    tokens = data.splits[split]
    n = (len(tokens) - 1) // T
    x = tokens[: n * T].view(n, T)  # (n, T)
    y = tokens[1 : n * T + 1].view(n, T)  # (n, T)
    device = next(model.parameters()).device
    total = 0.0
    for i in range(0, n, batch_size):
        _, loss = model(x[i : i + batch_size].to(device), y[i : i + batch_size].to(device))
        total += loss.item() * len(x[i : i + batch_size])
    return total / n


@command
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="weights folder or Hub repo id (default: the shipped weights/default)")
    parser.add_argument("--data", default=SHAKESPEARE, help="'shakespeare' or the text the model was trained on")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    model = GPT.from_pretrained(args.weights or default_weights(), map_location=str(device))
    data = TextData(load_text(args.data), CharTokenizer(model.vocab), model.config.block_size)
    for split in ("train", "val"):
        print(f"{split} loss: {split_loss(model, data, split):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
