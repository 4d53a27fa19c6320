"""Validation loss against wall-clock seconds, for a preset trained by our Trainer from scratch.

    python bench/time_to_quality.py [--preset cpu] [--budget SECONDS] [--dtype auto|float32|bfloat16]
    python bench/time_to_quality.py --vs-nanogpt [--preset cpu] [--repeats 2] [--threads 2]

--vs-nanogpt races nanoGPT's CPU recipe (bench/nanogpt_cpu.py) and ours in one process, alternating, on the same
split: each round trains nanoGPT's 2,000 steps, then ours with `max_time` set to the wall time nanoGPT just took,
then ours again with a quarter of that time, and scores the final models on the same 100 validation batches
(writes time_to_quality_vs_nanogpt.json/png).

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
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from gpt.sharing.card import line_chart_png  # noqa: E402
from gpt.training.trainer import Trainer, TrainConfig  # noqa: E402

THRESHOLDS = (2.0, 1.8, 1.6, 1.5)
TARGETS = ((1.75, 120), (1.60, 600))  # (val loss, within seconds), for the cpu preset


def train(config: TrainConfig, budget: float | None, keep_model: bool = False) -> dict:
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
            "device": events[0]["device"], "evals": evals, **({"model": trainer.eval_model} if keep_model else {})}


def first_reached(evals: list[dict], level: float) -> dict | None:
    return next(({"elapsed_s": e["elapsed"], "step": e["step"], "val_loss": e["val_loss"]}
                 for e in evals if e["val_loss"] <= level), None)


def draw_chart(evals: list[dict], title: str, path: Path) -> None:
    """val and train loss against seconds, with the thresholds as level lines."""
    series = [(name, colour, [(e["elapsed"], e[key]) for e in evals])
              for name, colour, key in (("train", "#4f46e5", "train_loss"), ("val", "#f97316", "val_loss"))]
    path.write_bytes(line_chart_png(series, x_label="wall-clock seconds (evaluations included)", title=title,
                                    levels=[(t, f"val {t}") for t in THRESHOLDS], size=(900, 500)))


@torch.no_grad()
def referee_val(model, val: torch.Tensor, block_size: int, batches: int = 100, batch_size: int = 32) -> float:
    """Mean float32 loss on the same seeded validation windows for every model (cut to its block size)."""
    model.eval()
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(batches):
        ix = torch.randint(len(val) - 256, (batch_size,), generator=generator)
        windows = torch.stack([val[i:i + block_size + 1] for i in ix])
        x, y = windows[:, :-1].contiguous(), windows[:, 1:].contiguous()  # the models' losses view the targets flat
        losses.append(model(x, y)[1].item())
    return sum(losses) / len(losses)


def vs_nanogpt(args) -> None:
    """nanoGPT's CPU recipe and ours, alternating, on the same split; ours gets nanoGPT's wall time."""
    sys.path.insert(0, str(ROOT / "bench"))
    import nanogpt_cpu
    from gpt.data import TextData, load_text
    from gpt.tokenizer import CharTokenizer

    text = load_text("shakespeare")
    tokenizer = CharTokenizer.from_text(text)
    splits = TextData(text, tokenizer, 64).splits  # the lecture's split: first 90% train, last 10% val
    rounds = []
    for i in range(args.repeats):
        nano = nanogpt_cpu.train(splits, tokenizer.vocab_size)
        nano_model = nano.pop("model")
        nano["final_val"] = referee_val(nano_model, splits["val"], nanogpt_cpu.RECIPE["block_size"])
        print(f"round {i + 1}: nanoGPT {nano['steps'] - 1} steps in {nano['elapsed_s']:.1f} s, "
              f"final val {nano['final_val']:.4f}", flush=True)
        config = TrainConfig.from_preset(args.preset, dtype=args.dtype, device="cpu", max_time=nano["elapsed_s"],
                                         **({"eval_interval": args.eval_interval} if args.eval_interval else {}))
        ours = train(config, None, keep_model=True)
        model = ours.pop("model")
        ours["final_val"] = referee_val(model, splits["val"], config.block_size)
        ours["config"] = {k: getattr(config, k) for k in ("n_layer", "n_head", "n_embd", "block_size", "batch_size",
                                                          "learning_rate", "min_lr", "warmup_iters", "max_time",
                                                          "eval_interval", "eval_iters", "dtype")}
        hit = next((e for e in ours["evals"] if e["val_loss"] <= nano["final_val"]), None)
        # the same preset given a quarter of that time: what a user who wants nanoGPT's quality sooner would run
        quarter = train(replace(config, max_time=nano["elapsed_s"] / 4), None, keep_model=True)
        quarter["final_val"] = referee_val(quarter.pop("model"), splits["val"], config.block_size)
        rounds.append({"nanogpt": nano, "ours": ours, "gap": nano["final_val"] - ours["final_val"],
                       "reach_nanogpt_final_s": hit and hit["elapsed"],
                       "reach_ratio": hit and hit["elapsed"] / nano["elapsed_s"], "ours_quarter_time": quarter})
        print(f"round {i + 1}: ours ({args.preset}) {ours['steps']} steps in {ours['elapsed_s']:.1f} s, final val "
              f"{ours['final_val']:.4f}; {rounds[-1]['gap']:.3f} below nanoGPT; nanoGPT's final val reached at "
              + (f"{hit['elapsed']:.1f} s = {rounds[-1]['reach_ratio']:.2f} of its time" if hit else "never")
              + f" inside it; given a quarter of the time ({quarter['elapsed_s']:.1f} s) ours ends at "
              f"{quarter['final_val']:.4f}", flush=True)
    print(f"\nval against wall-clock seconds (loop only; setup apart), {ours['device']}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for i, r in enumerate(rounds):
        for name, run in (("nanogpt", r["nanogpt"]), ("ours", r["ours"]), ("ours 1/4", r["ours_quarter_time"])):
            points = "  ".join(f"{e['elapsed']:.0f}s:{e['val_loss']:.3f}" for e in run["evals"])
            print(f"round {i + 1} {name:<8} {points}")
    worst_gap = min(r["gap"] for r in rounds)
    ratios = [r["reach_ratio"] for r in rounds]
    worst_ratio = None if None in ratios else max(ratios)
    worst_quarter = max(r["ours_quarter_time"]["final_val"] - r["nanogpt"]["final_val"] for r in rounds)
    targets = [{"target": "ours ends >= 0.30 below nanoGPT's final val, given nanoGPT's wall time",
                "worst": worst_gap, "met": worst_gap >= 0.30},
               {"target": "ours reaches nanoGPT's final val in <= 1/4 of nanoGPT's time, inside the full-time run",
                "worst": worst_ratio, "met": worst_ratio is not None and worst_ratio <= 0.25},
               {"target": "ours, given 1/4 of nanoGPT's time, ends at or below nanoGPT's final val (val above it)",
                "worst": worst_quarter, "met": worst_quarter <= 0}]
    for t in targets:
        print(f"{t['target']}: {'met' if t['met'] else 'NOT met'} (worst round {t['worst']})")
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.name if args.name != "time_to_quality" else "time_to_quality_vs_nanogpt"
    (args.out / f"{name}.json").write_text(json.dumps(
        {"preset": args.preset, "dtype": args.dtype, "threads": torch.get_num_threads(), "torch": torch.__version__,
         "nanogpt_recipe": nanogpt_cpu.RECIPE, "referee": "mean float32 loss on 100 seeded val batches of 32",
         "clock": "wall-clock seconds of each training loop, evaluations and saves included",
         "rounds": rounds, "targets": targets}, indent=2) + "\n")
    last = rounds[-1]
    series = [("nanoGPT val", "#64748b", [(e["elapsed"], e["val_loss"]) for e in last["nanogpt"]["evals"]]),
              (f"ours ({args.preset}) val", "#f97316", [(e["elapsed"], e["val_loss"]) for e in last["ours"]["evals"]]),
              ("ours, a quarter of the time", "#16a34a",
               [(e["elapsed"], e["val_loss"]) for e in last["ours_quarter_time"]["evals"]])]
    (args.out / f"{name}.png").write_bytes(line_chart_png(
        series, x_label="wall-clock seconds (evaluations included)", size=(900, 500),
        title=f"nanoGPT's CPU recipe vs ours, same wall time, {last['ours']['device']}",
        levels=[(last["nanogpt"]["final_val"], "nanoGPT final")]))
    print(f"wrote {name}.json and {name}.png in {args.out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--budget", type=float, default=None, help="stop after this many seconds (default: the preset's end)")
    parser.add_argument("--dtype", default="auto", help="the trainer's --dtype: auto, float32 or bfloat16")
    parser.add_argument("--eval-interval", type=int, default=None, help="default: the preset's")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="folder for the JSON and PNG")
    parser.add_argument("--name", default="time_to_quality", help="file name of the JSON and PNG")
    parser.add_argument("--vs-nanogpt", action="store_true", help="race nanoGPT's CPU recipe, alternating")
    parser.add_argument("--repeats", type=int, default=1, help="with --vs-nanogpt: rounds (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.vs_nanogpt:
        return vs_nanogpt(args)
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
