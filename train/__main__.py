"""Train from the command line: `python -m train --preset cpu --out weights/my-run`.

Every TrainConfig field is a flag (--n-layer, --learning-rate, ...) that overrides the preset.
Ctrl-C stops after the current step and keeps the best weights; --resume carries on from there.
Fine-tune: `--init-from weights/NAME` or `--init-from user/repo` starts from those weights (their model shape).
List the runs in weights/ with their state and best val: `python -m train --list [--sort "best val"]`.
Several processes: `torchrun --nproc_per_node=2 -m train --preset cpu ...` (DDP; gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import argparse
import functools
import shlex
import signal
import sys
import textwrap
import time
from dataclasses import fields
from pathlib import Path

from tqdm import tqdm

from gpt.training import budget
from gpt.ladder import rungs as ladder
from gpt.ladder import rung_code
from gpt.training import runs
from gpt.sharing import weights
from gpt.sharing.card import params_text
from gpt.errors import ConfigError, GPTError, command
from gpt.training.presets import PRESETS
from gpt.training.trainer import Trainer, TrainConfig

# what may change when resuming: anything else would no longer be the same run
RESUMABLE = {"max_iters", "max_time", "eval_interval", "eval_iters", "sample_length", "device", "dtype", "compile", "data"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu", choices=list(PRESETS), help="starting settings (default: cpu)")
    parser.add_argument("--out", type=Path, help="run folder for weights and metrics (default: weights/<preset>-<time>)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    parser.add_argument("--overwrite", action="store_true", help="start afresh even if --out holds a run")
    parser.add_argument("--ladder", action="store_true",
                        help="retrace the lecture rung by rung and print the table (weights in --out, default "
                             "weights/ladder)")
    parser.add_argument("--list", action="store_true",
                        help="list the runs in --out (default weights/): state, steps, best val, time, settings; "
                             "with --ladder: the rungs, what each adds and its figures")
    parser.add_argument("--sort", default="newest", choices=["newest", "best val"], help="with --list: the order")
    parser.add_argument("--rungs", default="1-6",
                        help=f"with --ladder: which rungs, e.g. 1-6, 3,5 or 7; 'lecture' for "
                             f"{ladder.span(ladder.flight('lecture'))}, 'beyond' for the second flight, "
                             f"{ladder.span(ladder.flight('beyond'))} (default 1-6)")
    parser.add_argument("--show", type=int, metavar="N",
                        help="with --ladder: print what rung N adds (the idea, and its code as a diff), train nothing")
    overrides = parser.add_argument_group("settings (override the preset)")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            overrides.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
            kind = duration if f.name == "max_time" else kind
            helps = {"data": "'shakespeare' (default) or the path of any UTF-8 text file",
                     "init_from": "fine-tune: start from a weights folder or Hub repo id (user/repo); the model's "
                                  "shape and vocabulary are theirs",
                     "device": "auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps",
                     "optimizer": "adamw, or muon: Muon for the matrices inside the Blocks, AdamW for the rest",
                     "muon_lr": "with --optimizer muon: Muon's peak learning rate (same warmup and decay)",
                     "max_time": "train for this long instead of the preset's steps (with --max-iters too: whichever "
                                 "comes first): seconds, or 90s, 2m, 1h; the learning rate decays over the time so "
                                 "the run ends annealed, evaluations included",
                     "log_every": "read (and log) the loss every N steps: each read waits for the device, so on a "
                                  "GPU the gpu preset reads 50 at a time",
                     "ema": "0 (off) or e.g. 0.95: evaluate, sample and save a moving average of the weights, this "
                            "much of it kept at each step"}
            overrides.add_argument(flag, dest=f.name, type=kind, default=None, help=helps.get(f.name))
    return parser.parse_args(argv)


def duration(text: str) -> float:
    try:
        return budget.seconds(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build(args) -> tuple[TrainConfig, Path]:
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}
    if args.resume:
        if args.out is None:
            raise ConfigError("--resume needs --out: the run folder to continue")
        if not (args.out / weights.STATE_FILE).is_file():
            raise GPTError(f"{args.out} holds no {weights.STATE_FILE}: there is no run to resume there")
        fixed = sorted(set(given) - RESUMABLE)
        if fixed:
            raise ConfigError(f"cannot change {', '.join('--' + k.replace('_', '-') for k in fixed)} when resuming; "
                              f"only {', '.join(sorted('--' + k.replace('_', '-') for k in RESUMABLE))}")
        saved = Trainer.saved_config(args.out)
        return TrainConfig(**{**{f.name: getattr(saved, f.name) for f in fields(TrainConfig)}, **given}), args.out
    shape = sorted(set(given) & {"n_layer", "n_head", "n_embd", "block_size", "bias"})
    if args.init_from and shape:
        raise ConfigError(f"cannot set {', '.join('--' + k.replace('_', '-') for k in shape)} with --init-from: the "
                       f"model's shape comes from the weights it starts from")
    out = args.out or Path("weights") / weights.new_run_name(args.preset)
    if not args.overwrite and ((out / weights.STATE_FILE).exists() or (out / weights.MODEL_FILE).exists()):
        raise ConfigError(f"{out} already holds a run: add --resume to continue it, --overwrite to replace it, "
                          f"or choose another --out")
    return TrainConfig.from_preset(args.preset, **given), out


class ProgressBar:
    """Turns trainer events into a tqdm bar (step, loss, val, tokens/s, ETA) and a line per eval."""

    def __init__(self):
        self.bar = None
        self.val = None
        self.timed = False  # a --max-time run counts down seconds, not steps

    def __call__(self, e: dict) -> None:
        if e["event"] == "start":
            c = e["config"]
            tqdm.write(f"{params_text(e['params'])} parameters · {c['n_layer']} layers, {c['n_head']} heads, "
                       f"{c['n_embd']} wide, block {c['block_size']}, batch {c['batch_size']} · {e['device']}"
                       + (f" × {e['world_size']} processes" if e["world_size"] > 1 else "")
                       + (f" · resuming at step {e['step']}" if e["resumed"] else ""))
            self.timed = bool(e.get("max_time"))
            if self.timed:
                self.bar = tqdm(total=round(e["max_time"]), initial=round(e["elapsed"]), unit="s", dynamic_ncols=True,
                                bar_format="{l_bar}{bar}| {n:.0f}/{total} s [{remaining} left{postfix}]")
            else:
                self.bar = tqdm(total=e["max_iters"], initial=e["step"], unit="step", dynamic_ncols=True)
        elif e["event"] == "step":
            if self.timed:
                self.bar.update(min(e["elapsed"], self.bar.total) - self.bar.n)
            else:
                self.bar.update(e["step"] - self.bar.n)
            postfix = {"step": e["step"]} if self.timed else {}
            postfix["loss"] = f"{e['loss']:.3f}"
            if self.val is not None:
                postfix["val"] = f"{self.val:.3f}"
            postfix["tok/s"] = f"{e['tokens_per_sec']:,.0f}"
            self.bar.set_postfix(postfix, refresh=False)
        elif e["event"] == "eval":
            self.val = e["val_loss"]
            sample = " ".join(e["sample"].split())[:100]
            tqdm.write(f"step {e['step']:>6}: train {e['train_loss']:.4f}, val {e['val_loss']:.4f}"
                       + (" (best, saved)" if e["saved"] else "") + (f"  | {sample}" if sample else ""))
        elif e["event"] in ("done", "stopped"):
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def parse_rungs(text: str) -> list[int]:
    if text.strip() in ("lecture", "beyond"):
        return [r.number for r in ladder.flight(text.strip())]
    rungs = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ConfigError(f"--rungs {text!r}: use numbers and ranges like 1-6 or 3,5")
        rungs.update(range(int(low), int(high or low) + 1))
    known = {r.number for r in ladder.RUNGS}
    if not rungs <= known:
        raise ConfigError(f"the ladder has rungs {ladder.span(ladder.RUNGS).replace('-', ' to ')}, not "
                          f"{sorted(rungs - known)}")
    return sorted(rungs)


def rungs_table() -> str:
    """Every rung: what it adds, its parameters, the lecture's val, and the second flight's measured one."""
    bench, where = rung_code.flight_figures()
    lines = [f"{'rung':<5}{'flight':<9}{'what it adds':<58}{'params':>10}{'lecture':>9}{'measured':>10}"]
    for r in ladder.RUNGS:
        params = rung_code.params_added(r.number)
        measured = f"{bench[r.number]['val_mean']:.4f}" if r.number in bench else ""
        lecture = f"{r.lecture_val}" if r.lecture_val is not None else ""
        lines.append(f"{r.number:<5}{r.flight:<9}{r.change[:56]:<58}{params:>+10,}{lecture:>9}{measured:>10}")
    lines.append("params: what each rung adds to the one it builds on. python -m train --ladder --show N: its code")
    if where:
        lines.append(f"measured: {where}")
    return "\n".join(lines)


def show_rung(number: int) -> str:
    rung = ladder.rung(number)
    before = f"builds on rung {rung.before}" if rung.before else "the first rung"
    out = [f"rung {rung.number}: {rung.name} — {rung.change} ({before})", "", textwrap.fill(rung.why, 100)]
    settings = rung_code.settings_diff(rung)
    if settings:
        out += ["", "settings it changes:", *settings]
    for piece in rung_code.pieces(number):
        replaces = f" (replaces {piece.replaces[0]} of {piece.replaces[1]})" if piece.replaces else " (new)"
        out += ["", f"{piece.path}: {piece.name}{replaces}", *piece.diff]
    return "\n".join(out)


def run_ladder(args) -> int:
    """Train each chosen rung with the lecture's settings and print the lecture's table with our numbers."""
    rungs = [r for r in ladder.RUNGS if r.number in parse_rungs(args.rungs)]
    out = args.out or Path("weights") / "ladder"
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}
    rows, started = [], time.perf_counter()
    for rung in rungs:
        tqdm.write(f"\nrung {rung.number}: {rung.name} — {rung.change}")
        trainer = Trainer(ladder.train_config(rung, **overrides), out / f"rung-{rung.number}",
                          callbacks=[ProgressBar()], model_factory=functools.partial(ladder.build, rung.number))
        result = trainer.run()
        rows.append((rung, trainer.model.num_params(), result["best_val"], result["elapsed"]))
    print(f"\n{'rung':<5}{'what changed':<26}{'params':>9}{'val':>8}{'lecture':>9}{'vs before':>11}{'time':>8}")
    vals = {rung.number: val for rung, _, val, _ in rows}
    for rung, params, val, elapsed in rows:
        lecture = f"{rung.lecture_val:.2f}" if rung.lecture_val is not None else ""
        gap = f"{val - vals[rung.before]:+.3f}" if rung.before in vals else ""
        print(f"{rung.number:<5}{rung.name:<26}{params:>9,}{val:>8.3f}{lecture:>9}{gap:>11}{elapsed:>7.0f}s")
    print(f"total {time.perf_counter() - started:.0f} s; weights in {out}/rung-N")
    return 0


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.ladder:
        if args.list or args.show is not None:
            print(rungs_table() if args.list else show_rung(args.show))
            return 0
        return run_ladder(args)
    if args.list:
        print(runs.runs_table(runs.list_runs(args.out or Path("weights"), sort=args.sort)))
        return 0
    config, out = build(args)
    line = shlex.join(["python", "-m", "train", *(sys.argv[1:] if argv is None else argv)])
    progress = ProgressBar()
    trainer = Trainer(config, out, resume=args.resume, callbacks=[progress], command=line)

    first_signal = []

    def request_stop(signum, frame):
        # a second Ctrl-C quits at once (saves are atomic, nothing is corrupted); a signal within a second of
        # the first is the same Ctrl-C arriving twice (torchrun forwards it to workers that already had it)
        if first_signal and time.monotonic() - first_signal[0] > 1.0:
            raise KeyboardInterrupt
        if first_signal:
            return
        first_signal.append(time.monotonic())
        trainer.stop.set()
        if trainer.master:
            tqdm.write("stopping after this step and keeping the best weights (Ctrl-C again to quit at once)")

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        result = trainer.run()
    finally:
        progress.close()  # an error (a full disk) is then printed on a line of its own
    if trainer.master:
        word = "stopped" if result["event"] == "stopped" else "finished"
        print(f"{word} at step {result['step']} after {result['elapsed']:.0f} s; best val loss "
              f"{result['best_val']:.4f}, weights in {out}/")
        print(f"generate: python -m gpt.generate --weights {out} --prompt \"ROMEO:\"")
        if result["event"] == "stopped":
            print(f"continue: python -m train --out {out} --resume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
