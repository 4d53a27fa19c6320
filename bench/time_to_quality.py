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
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
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


def draw_chart(evals: list[dict], title: str, path: Path, size=(900, 500)) -> None:
    """val (and train) loss against seconds, with the thresholds as grey guides: PIL only, no matplotlib."""
    W, H = size
    left, right, top, bottom = 70, 30, 50, 60
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=14)
    x_max = max(e["elapsed"] for e in evals) * 1.02 or 1
    y_lo, y_hi = 1.2, max(4.4, max(e["val_loss"] for e in evals))
    px = lambda t: left + (W - left - right) * t / x_max  # noqa: E731
    py = lambda v: top + (H - top - bottom) * (y_hi - min(max(v, y_lo), y_hi)) / (y_hi - y_lo)  # noqa: E731
    for v in sorted({*THRESHOLDS, 2.5, 3.0, 3.5, 4.0}):
        draw.line([(left, py(v)), (W - right, py(v))], fill="#d1d5db" if v in THRESHOLDS else "#f3f4f6")
        draw.text((left - 40, py(v) - 8), f"{v:.1f}", fill="#6b7280", font=font)
    tick = next(t for t in (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600) if x_max / t <= 10)
    for s in range(0, int(x_max) + 1, tick):
        draw.line([(px(s), H - bottom), (px(s), H - bottom + 5)], fill="black")
        draw.text((px(s) - 10, H - bottom + 8), f"{s}", fill="black", font=font)
    draw.line([(left, top), (left, H - bottom), (W - right, H - bottom)], fill="black")
    for key, colour in (("train_loss", "#4f46e5"), ("val_loss", "#f97316")):
        points = [(px(e["elapsed"]), py(e[key])) for e in evals]
        draw.line(points, fill=colour, width=3)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    draw.text((left, 15), title, fill="black", font=font)
    draw.text((W - right - 200, top + 5), "train", fill="#4f46e5", font=font)
    draw.text((W - right - 140, top + 5), "val", fill="#f97316", font=font)
    draw.text((W // 2 - 150, H - 25), "wall-clock seconds (evaluations included)", fill="black", font=font)
    image.save(path)


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
