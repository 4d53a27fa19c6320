"""What the `cpu` preset's moving average of the weights (ema) gives: val of the average against the weights.

    python bench/average.py [--steps 1150] [--every 300]

Trains the `cpu` preset for --steps steps (its learning rate planned over them) with the Trainer itself, and at
every --every steps and at the end scores both the trained weights and their average on the same 100 seeded
validation batches (time_to_quality's referee). Fixed steps, so the figures do not depend on the machine's speed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from time_to_quality import referee_val  # noqa: E402

from gpt.training.trainer import Trainer, TrainConfig  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1150)
    parser.add_argument("--every", type=int, default=300)
    args = parser.parse_args()
    config = TrainConfig.from_preset("cpu", device="cpu", max_iters=args.steps, eval_interval=args.every)
    print(f"cpu preset, ema {config.ema}, {args.steps} steps; referee val of the weights and of their average")
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(config, out)

        def score(event):
            if event["event"] == "eval" and event["step"] > 0:
                val = trainer.data.splits["val"]
                weights, average = (referee_val(m, val, config.block_size) for m in (trainer.model, trainer.eval_model))
                trainer.model.train()
                print(f"step {event['step']:>5}: weights {weights:.4f}, average {average:.4f}", flush=True)

        trainer.callbacks.append(score)
        trainer.run()


if __name__ == "__main__":
    main()
