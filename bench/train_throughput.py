"""Training tokens/s: our Trainer's step against the lecture's training loop, same config, same batches.

    python bench/train_throughput.py [--configs cpu lecture] [--json bench/results/train_throughput.json]

Ours is gpt.training.trainer.Trainer itself, run for a few steps and timed from its own step events: batch, forward,
loss, backward, clipping, AdamW, the per-step event and metrics.jsonl line, exactly as in training. The
lecture's is bench/lecture_gpt.py with the lecture's loop (get_batch, forward, zero_grad, backward, AdamW step).
Both see the same batches and run alternately in one process (ours, lecture, ours, lecture, ...), each round
after its own warm-up steps and all after one whole round that is not counted (the allocator's first large
requests are slow), so a slower or busier moment of the machine hits both sides alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from lecture_gpt import GPTLanguageModel, get_batch  # noqa: E402

from gpt.device import describe_device  # noqa: E402
from gpt.training.trainer import Trainer, TrainConfig, _seed  # noqa: E402

# preset -> (measured steps per round, warm-up steps per round, rounds); the lecture size takes seconds a step
PLANS = {"cpu": (30, 5, 5), "lecture": (3, 2, 3)}


def batch_ix(config: TrainConfig, n_train: int, step: int) -> torch.Tensor:
    """The random window starts the Trainer draws at this step (rank 0), so the lecture sees the same batches."""
    generator = torch.Generator().manual_seed(_seed(config.seed, 0, step))
    return torch.randint(n_train - config.block_size, (config.batch_size,), generator=generator)


def ours(config: TrainConfig, warmup: int, steps: int) -> float:
    """Tokens/s of the Trainer over `steps` steps after `warmup`, timed between its own step events."""
    times = []
    with tempfile.TemporaryDirectory() as out:
        run = TrainConfig(**{**config.__dict__, "max_iters": warmup + steps, "eval_interval": 10**9,
                             "eval_iters": 1, "sample_length": 0})  # one tiny eval at the start and the end
        trainer = Trainer(run, out, callbacks=[lambda e: e["event"] == "step" and times.append(time.perf_counter())])
        trainer.run()
    return steps * config.batch_size * config.block_size / (times[-1] - times[warmup - 1])


def lecture(config: TrainConfig, train_data: torch.Tensor, vocab_size: int, warmup: int, steps: int) -> float:
    """Tokens/s of the lecture's loop over `steps` steps after `warmup`."""
    torch.manual_seed(config.seed)
    model = GPTLanguageModel(vocab_size, config.n_embd, config.n_head, config.n_layer, config.block_size,
                             config.dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    for step in range(warmup + steps):
        if step == warmup:
            started = time.perf_counter()
        xb, yb = get_batch(train_data, config.block_size, batch_ix(config, len(train_data), step))
        logits, loss = model(xb, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * config.batch_size * config.block_size / (time.perf_counter() - started)


def compare(preset: str, rounds: int, overrides: dict) -> dict:
    steps, warmup, default_rounds = PLANS[preset]
    rounds = rounds or default_rounds
    config = TrainConfig.from_preset(preset, device="cpu", **overrides)
    with tempfile.TemporaryDirectory() as out:  # the Trainer's own data, for the lecture's batches
        probe = Trainer(TrainConfig(**{**config.__dict__, "max_iters": 0}), out)
    train_data, vocab_size = probe.data.splits["train"], probe.tokenizer.vocab_size
    del probe
    rows = []
    for r in range(-1, rounds):  # round -1 warms the process up (allocator, caches) and is not counted
        a = ours(config, warmup, steps)
        b = lecture(config, train_data, vocab_size, warmup, steps)
        if r < 0:
            print(f"  {preset} warm-up round: ours {a:,.0f} tokens/s, lecture {b:,.0f} (not counted)", flush=True)
            continue
        rows.append({"ours": a, "lecture": b, "ratio": a / b})
        print(f"  {preset} round {r + 1}: ours {a:,.0f} tokens/s, lecture {b:,.0f}, ratio {a / b:.2f}", flush=True)
    ratios = [row["ratio"] for row in rows]
    return {"preset": preset, "overrides": overrides, "steps_per_round": steps, "warmup_per_round": warmup,
            "tokens_per_step": config.batch_size * config.block_size,
            "ours_tokens_per_s": statistics.median(r["ours"] for r in rows),
            "lecture_tokens_per_s": statistics.median(r["lecture"] for r in rows),
            "ratio_min": min(ratios), "ratio_median": statistics.median(ratios), "ratio_max": max(ratios),
            "rounds": rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["cpu", "lecture"], choices=sorted(PLANS))
    parser.add_argument("--rounds", type=int, default=0, help="alternating rounds (default: 5 cpu, 3 lecture)")
    parser.add_argument("--dtype", help="override our TrainConfig.dtype (auto, float32, bfloat16)")
    parser.add_argument("--compile", action="store_true", help="our step with torch.compile")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "train_throughput.json")
    args = parser.parse_args()
    overrides = {k: v for k, v in (("dtype", args.dtype), ("compile", args.compile or None)) if v is not None}
    results = [compare(p, args.rounds, overrides) for p in args.configs]
    print(f"\n{describe_device(torch.device('cpu'))}, torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'config':<9} {'ours tok/s':>11} {'lecture tok/s':>14} {'ours/lecture min':>17} {'median':>7} {'max':>6}")
    for r in results:
        print(f"{r['preset']:<9} {r['ours_tokens_per_s']:>11,.0f} {r['lecture_tokens_per_s']:>14,.0f} "
              f"{r['ratio_min']:>17.2f} {r['ratio_median']:>7.2f} {r['ratio_max']:>6.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": describe_device(torch.device("cpu")), "torch": torch.__version__,
                                     "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                     "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
