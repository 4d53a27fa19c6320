"""Validation loss against wall-clock seconds, for a preset trained by our Trainer from scratch.

    python bench/time_to_quality.py [--preset cpu] [--budget SECONDS] [--dtype auto|float32|bfloat16]

The clock is the trainer's own `elapsed`: wall-clock seconds since the run started, evaluations, samples and
saves included (the data loading and model building before it take about a second more, reported apart). Each
point is the trainer's estimate at an evaluation (eval_iters random batches per split, as the lecture's
estimate_loss), stamped with the time its evaluation began, so the time of an evaluation is charged to the
points after it. Writes a table, bench/results/time_to_quality.json and a chart, time_to_quality.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from gpt.card import line_chart_png  # noqa: E402
from gpt.trainer import Trainer, TrainConfig  # noqa: E402

THRESHOLDS = (2.0, 1.8, 1.6, 1.5)
TARGETS = ((1.75, 120), (1.60, 600))  # (val loss, within seconds), for the cpu preset


def train(config: TrainConfig, budget: float | None) -> dict:
    events = []
    stop = threading.Event()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(config, out, stop=stop, callbacks=[events.append])
        setup = time.perf_counter() - started
        if budget:
            threading.Timer(budget, stop.set).start()  # the trainer stops after the step under way, then evaluates
        end = trainer.run()
    stop.set()
    evals = [{k: e[k] for k in ("step", "elapsed", "train_loss", "val_loss")} for e in events if e["event"] == "eval"]
    rates = sorted(e["tokens_per_sec"] for e in events if e["event"] == "step")
    return {"setup_s": setup, "end": end["event"], "steps": end["step"], "elapsed_s": end["elapsed"],
            "median_tokens_per_s": rates[len(rates) // 2] if rates else None,
            "device": events[0]["device"], "evals": evals}


def first_reached(evals: list[dict], level: float) -> dict | None:
    return next(({"elapsed_s": e["elapsed"], "step": e["step"], "val_loss": e["val_loss"]}
                 for e in evals if e["val_loss"] <= level), None)


def draw_chart(evals: list[dict], title: str, path: Path) -> None:
    """val and train loss against seconds, with the thresholds as level lines."""
    series = [(name, colour, [(e["elapsed"], e[key]) for e in evals])
              for name, colour, key in (("train", "#4f46e5", "train_loss"), ("val", "#f97316", "val_loss"))]
    path.write_bytes(line_chart_png(series, x_label="wall-clock seconds (evaluations included)", title=title,
                                    levels=[(t, f"val {t}") for t in THRESHOLDS], size=(900, 500)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--budget", type=float, default=None, help="stop after this many seconds (default: the preset's end)")
    parser.add_argument("--dtype", default="auto", help="the trainer's --dtype: auto, float32 or bfloat16")
    parser.add_argument("--eval-interval", type=int, default=None, help="default: the preset's")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="folder for the JSON and PNG")
    parser.add_argument("--name", default="time_to_quality", help="file name of the JSON and PNG")
    args = parser.parse_args()
    overrides = {"dtype": args.dtype, "device": args.device}
    if args.eval_interval:
        overrides["eval_interval"] = args.eval_interval
    config = TrainConfig.from_preset(args.preset, **overrides)
    result = train(config, args.budget)
    reached = {f"{v:.1f}": first_reached(result["evals"], v) for v in THRESHOLDS}
    print(f"\n{args.preset} preset, dtype {args.dtype}, {result['device']}, torch {torch.__version__}: "
          f"{result['steps']} steps in {result['elapsed_s']:.0f} s ({result['end']}), "
          f"median {result['median_tokens_per_s']:,.0f} tokens/s; setup before the clock {result['setup_s']:.1f} s")
    print("clock: wall-clock seconds since the run started, evaluations included\n")
    print(f"{'step':>6} {'seconds':>8} {'train':>7} {'val':>7}")
    for e in result["evals"]:
        print(f"{e['step']:>6} {e['elapsed']:>8.1f} {e['train_loss']:>7.4f} {e['val_loss']:>7.4f}")
    print(f"\n{'val <=':>7} {'first at (s)':>13} {'step':>6}")
    for level, hit in reached.items():
        print(f"{level:>7} {hit['elapsed_s'] if hit else float('nan'):>13.1f} {hit['step'] if hit else '-':>6}")
    targets = []
    if args.preset == "cpu":
        for level, seconds in TARGETS:
            hit = first_reached(result["evals"], level)
            met = hit is not None and hit["elapsed_s"] <= seconds
            targets.append({"val": level, "within_s": seconds, "met": met, "reached": hit})
            at = f" (val {hit['val_loss']:.4f} at {hit['elapsed_s']:.0f} s)" if hit else ""
            print(f"target val <= {level} within {seconds} s: {'met' if met else 'NOT met'}{at}")
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = args.out / f"{args.name}.json", args.out / f"{args.name}.png"
    json_path.write_text(json.dumps({"preset": args.preset, "dtype": args.dtype, "torch": torch.__version__,
                                     "clock": "wall-clock seconds since Trainer.run() began, evaluations included",
                                     **result, "first_reached": reached, "targets": targets}, indent=2) + "\n")
    draw_chart(result["evals"], f"{args.preset} preset ({args.dtype}) on {result['device']}: loss against time",
               png_path)
    print(f"\nwrote {json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path} and {png_path.name}")


if __name__ == "__main__":
    main()
