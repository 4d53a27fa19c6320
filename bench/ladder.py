"""The ladder's second flight measured: each rung trained for the same wall-clock time, scored on the whole
validation split, against the rung before it, over several seeds.

    python bench/ladder.py [--seconds 60] [--seeds 1337,1338] [--rungs 8-14] [--json bench/results/ladder_beyond.json]

Seeds are the outer loop, so every rung sees the same moods of the machine. Each rung's val is the referee's
(gpt.evaluate.split_loss: every consecutive block_size window of the val split), of the weights the run ends with
(its moving average, for the ema rung), not the trainer's estimate on random batches. The gap to the rung before
is paired by seed; "helps" when the mean gap is below zero by more than twice its spread over seeds.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpt.ladder import rungs as ladder  # noqa: E402
from gpt.data import TextData, load_text  # noqa: E402
from gpt.device import cpu_name, describe_device, pick_device  # noqa: E402
from gpt.evaluate import split_loss  # noqa: E402
from gpt.tokenizer import CharTokenizer  # noqa: E402
from gpt.training.trainer import Trainer  # noqa: E402


def climb(rung: ladder.Rung, seconds: float, seed: int, folder: Path) -> dict:
    config = ladder.train_config(rung, max_time=seconds, seed=seed)
    trainer = Trainer(config, folder, model_factory=functools.partial(ladder.build, rung.number))
    result = trainer.run()
    model = trainer.eval_model.eval()
    data = TextData(load_text(), CharTokenizer(model.vocab), config.block_size)
    with torch.no_grad():
        val = split_loss(model, data, "val")
    return {"val": round(val, 4), "steps": result["step"], "seconds": round(result["elapsed"], 1),
            "params": model.num_params()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="training time of each rung (default 60)")
    parser.add_argument("--seeds", default="1337,1338", help="comma-separated (default 1337,1338)")
    flight = ladder.span(ladder.flight("beyond"))
    parser.add_argument("--rungs", default=flight, help=f"a range of the second flight (default {flight})")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "ladder_beyond.json")
    parser.add_argument("--add", action="store_true", help="add these seeds' runs to those already in --json")
    args = parser.parse_args(argv)
    low, _, high = args.rungs.partition("-")
    rungs = [ladder.rung(n) for n in range(int(low), int(high or low) + 1)]
    seeds = [int(s) for s in args.seeds.split(",")]
    work = Path(tempfile.mkdtemp(prefix="ladder-beyond-"))
    runs = {r.number: [] for r in rungs}
    if args.add:  # more seeds on top of the file's: every rung it holds stays in the table
        for row in json.loads(args.json.read_text())["rungs"]:
            runs.setdefault(row["rung"], []).extend(row["runs"])
    started = time.perf_counter()
    for seed in seeds:
        for r in rungs:
            runs[r.number].append({"seed": seed, **climb(r, args.seconds, seed, work / f"rung-{r.number}-{seed}")})
            print(f"seed {seed} rung {r.number:>2} {r.name:<20} {runs[r.number][-1]}", flush=True)

    table = []
    for r in [ladder.rung(n) for n in sorted(runs)]:
        vals = [run["val"] for run in runs[r.number]]
        row = {"rung": r.number, "name": r.name, "change": r.change, "before": r.before,
               "val_mean": round(statistics.mean(vals), 4), "vals": vals,
               "steps_mean": round(statistics.mean(run["steps"] for run in runs[r.number])),
               "params": runs[r.number][0]["params"], "runs": runs[r.number]}
        before = {run["seed"]: run["val"] for run in runs.get(r.before, [])}
        gaps = [run["val"] - before[run["seed"]] for run in runs[r.number] if run["seed"] in before]  # by seed
        if gaps:
            spread = statistics.stdev(gaps) if len(gaps) > 1 else 0.0
            row.update(gap_mean=round(statistics.mean(gaps), 4), gaps=[round(g, 4) for g in gaps],
                       gap_spread=round(spread, 4), helps=statistics.mean(gaps) < -2 * spread,
                       seeds_paired=len(gaps))
        table.append(row)
    command = "python bench/ladder.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.add:
        previous = json.loads(args.json.read_text())
        seeds, command = sorted(set(previous["seeds"]) | set(seeds)), previous["command"] + "; " + command
    report = {"machine": f"{cpu_name()}, {describe_device(pick_device('cpu'))}", "torch": torch.__version__,
              "seconds_per_rung": args.seconds, "seeds": seeds, "date": time.strftime("%Y-%m-%d"),
              "command": command, "total_seconds": round(time.perf_counter() - started), "rungs": table}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\n{'rung':<5}{'idea':<21}{'steps':>7}{'val':>8}{'vs before':>11}  helps")
    for row in table:
        gap = f"{row['gap_mean']:+.4f}" if "gap_mean" in row else ""
        print(f"{row['rung']:<5}{row['name']:<21}{row['steps_mean']:>7}{row['val_mean']:>8.4f}{gap:>11}  "
              f"{row.get('helps', '')}")
    print(f"{report['machine']}; {args.seconds:g} s a rung; seeds {seeds}; {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
