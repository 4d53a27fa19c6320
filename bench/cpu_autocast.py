"""Two choices a CPU training run makes under bf16 autocast, measured: how it attends, and how it samples.

    python bench/cpu_autocast.py [--preset cpu] [--steps 100]

1. The `cpu` preset's whole training step (batch, forward, backward, clipping, optimizer) with each attention,
   alternated step by step in one process; the median step of each. "flash" is CPU flash attention in float32
   (bf16's backward is 4x slower), as gpt.model did before; "written out" is gpt.model.attention now (Head's
   formula in bf16).
2. The 200-character sample each evaluation shows, decoded in float32 (what Trainer.sample does on a CPU) and
   under bf16 autocast, alternated; the median of each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import gpt.model  # noqa: E402
from gpt.device import describe_device  # noqa: E402
from gpt.generation.decode import generate_text  # noqa: E402
from gpt.training.trainer import Trainer, TrainConfig  # noqa: E402

written_out = gpt.model.attention


def flash(q, k, v, mask=None, causal=True, dropout_p=0.0):
    if mask is None and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal,
                                                  dropout_p=dropout_p)
    return written_out(q, k, v, mask, causal, dropout_p)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--steps", type=int, default=100, help="timed steps of each")
    args = parser.parse_args()
    config = TrainConfig.from_preset(args.preset, device="cpu", max_iters=10**6)
    trainer = Trainer(config, tempfile.mkdtemp())
    model, optimizer = trainer.model, trainer.optimizer
    model.train()

    def step(i):
        X, Y = trainer.data.get_batch("train", config.batch_size, torch.Generator().manual_seed(i))
        with trainer.autocast():
            _, loss = model(X, Y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        loss.item()

    variants = {"flash (float32)": flash, "written out (bf16)": written_out}
    times = {name: [] for name in variants}
    for i in range(10):
        step(i)
    for i in range(args.steps):  # every other step: a busier moment of the machine hits both alike
        for name, fn in variants.items():
            gpt.model.attention = fn
            started = time.perf_counter()
            step(i)
            times[name].append(time.perf_counter() - started)
    autocast = "bf16 autocast" if trainer.autocast is not nullcontext else "float32 (no native bf16: both the same)"
    print(f"{args.preset} preset, {describe_device(trainer.device)}, {autocast}, torch {torch.__version__}")
    for name, t in times.items():
        print(f"{name:<20} median {statistics.median(t) * 1000:6.1f} ms a step, mean {statistics.mean(t) * 1000:6.1f}")

    samples = {"float32": nullcontext, "bf16 autocast": trainer.autocast}
    times = {name: [] for name in samples}
    model.eval()
    for _ in range(5):
        for name, context in samples.items():
            started = time.perf_counter()
            with context():
                generate_text(model, "", max_new_tokens=config.sample_length, seed=config.seed)
            times[name].append(time.perf_counter() - started)
    for name, t in times.items():
        print(f"sample of {config.sample_length} characters, {name:<14} median {statistics.median(t):5.2f} s")


if __name__ == "__main__":
    main()
