"""The runs in a weights folder: what each one is, how far it got, and how they compare.

Everything is read from what a run writes as it goes — metrics.jsonl (its settings, evaluations and how it
ended), config.json and training_state.safetensors — so a run that finished, was stopped, or was cut off by a
restart is listed the same way by the app and by `python -m train --list`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from gpt.sharing import weights
from gpt.training import log as runlog
from gpt.sharing.card import params_text
from gpt.errors import ConfigError
from gpt.model import param_count
from gpt.training.presets import PRESETS
from gpt.training.trainer import TrainConfig

NOT_SETTINGS = {"device", "compile"}  # where a run trained, not what it is
STATES = ("training", "finished", "stopped", "interrupted", "weights only")


def run_folders(root: str | Path) -> list[tuple[str, str, Path]]:
    """(name, group, folder) of every run or weights folder under root; the ladder's rungs as group 'ladder'."""
    root = Path(root)
    found = []
    for group, parent in (("runs", root), ("ladder", root / "ladder")):
        for folder in sorted(parent.iterdir()) if parent.is_dir() else []:
            if runlog.exists(folder) or any((folder / f).is_file() for f in (weights.CONFIG_FILE, weights.STATE_FILE)):
                found.append((folder.name if group == "runs" else f"ladder/{folder.name}", group, folder))
    return found


def closest_preset(config: dict) -> tuple[str, dict]:
    """The preset a run's settings are nearest to, and the settings that differ from it: {name: value}."""
    best = None
    for name in PRESETS:
        preset = asdict(TrainConfig.from_preset(name))
        differs = {k: v for k, v in config.items() if k in preset and k not in NOT_SETTINGS and preset[k] != v}
        if best is None or len(differs) < len(best[1]):
            best = (name, differs)
    return best


def read_run(folder: Path, name: str, group: str = "runs", now: float | None = None) -> dict:
    """One run's summary: settings, progress, best val, state, val curve and latest sample."""
    run = runlog.read(folder, name) or runlog.RunRecord(name=name, folder=folder)
    meta = {}
    if (folder / weights.STATE_FILE).is_file():
        try:
            meta = weights.read_training_meta(folder)
        except weights.WeightsError:
            pass  # a state file cut short: the log still tells the story
    config = run.config or meta.get("config", {})
    changed = max((p.stat().st_mtime for p in folder.iterdir() if p.is_file()), default=0.0)
    # when it started (the log says; a copy or a fresh clone would give its files new dates), else its files' date
    started = run.started or changed
    steps = meta.get("step", run.step)
    # shipped or pulled, with no log of its training here: weights only
    state = run.outcome(changed, now or time.time()) if run.events else "weights only"
    params = run.params
    if params is None and (folder / weights.CONFIG_FILE).is_file():
        try:
            params = param_count(weights.read_raw_config(folder)[0])
        except weights.WeightsError:
            pass
    preset, differs = closest_preset(config) if config and group == "runs" else ("", {})
    differs = {k: Path(v).name if k in ("data", "init_from") else v for k, v in differs.items()}  # no long paths
    return {
        "name": name,
        "group": group,
        "when": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)) if started else "",
        "started": started,
        "device": run.device,
        "params": params,
        "preset": preset,
        "differs": differs,
        "steps": steps,
        "max_iters": config.get("max_iters"),
        "best_val": run.best_val if run.evals else meta.get("best_val"),
        "time": run.took or (run.elapsed if run.events else None),
        "state": state,
        "resumable": bool(meta) and state != "training",
        "init_from": run.init_from,
        "config": config,
        "curve": [(e["step"], e.get("elapsed", 0.0), e["val_loss"]) for e in run.evals],
        "sample": run.sample,
    }


def list_runs(root: str | Path = "weights", sort: str = "newest") -> list[dict]:
    """Every run under root, the runs first and the ladder's rungs after; newest first, or lowest best val first."""
    runs = [read_run(folder, name, group) for name, group, folder in run_folders(root)]
    if sort == "best val":
        runs.sort(key=lambda r: r["best_val"] if r["best_val"] is not None else float("inf"))
    elif sort == "newest":
        runs.sort(key=lambda r: r["started"], reverse=True)
    else:
        raise ConfigError(f"sort by 'newest' or 'best val', not {sort!r}")
    runs.sort(key=lambda r: r["group"] != "runs")  # stable: the order within each group stays
    return runs


def differing_settings(runs: list[dict]) -> dict[str, list]:
    """{setting: [value per run]} for the settings that are not the same in all the runs given."""
    keys = [k for k in asdict(TrainConfig()) if k not in NOT_SETTINGS]
    rows = {k: [r["config"].get(k) for r in runs] for k in keys}
    return {k: values for k, values in rows.items() if len(set(map(json.dumps, values))) > 1}


def delete_run(root: str | Path, name: str) -> None:
    """Remove weights/<name> and everything in it; the shipped default weights are never removed."""
    name = weights.check_name(name)
    folder = Path(root) / name
    if name == "default":
        raise ConfigError("the default weights ship with the app and cannot be deleted")
    if not any(n == name for n, _, _ in run_folders(root)):
        raise ConfigError(f"there is no run named {name!r} in weights/")
    shutil.rmtree(folder)


def runs_table(runs: list[dict]) -> str:
    """The runs as a plain-text table, for the terminal."""
    lines = [f"{'run':<28}{'state':<14}{'steps':>8}{'best val':>10}{'time':>8}{'params':>9}  "
             f"{'when (UTC)':<17} settings"]
    for r in runs:
        val = f"{r['best_val']:.4f}" if r["best_val"] is not None else "-"
        took = f"{r['time']:.0f}s" if r["time"] is not None else "-"
        params = params_text(r["params"]) if r["params"] else "-"
        settings = ", ".join(f"{k}={v}" for k, v in r["differs"].items())
        settings = (f"{r['preset']}" + (f" + {settings}" if settings else "")) if r["preset"] else ""
        lines.append(f"{r['name']:<28}{r['state']:<14}{r['steps']:>8,}{val:>10}{took:>8}{params:>9}  "
                     f"{r['when']:<17} {settings}")
    return "\n".join(lines)
