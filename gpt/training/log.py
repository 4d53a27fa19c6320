"""A run folder's log, metrics.jsonl: the one module that writes or reads it; everything else asks here.

One JSON object per line, appended as the run goes. Every line has "event" and "step":
- start: config (the TrainConfig's fields), params, vocab_size, device, world_size, backend (torchrun's: nccl or
  gloo; null without torchrun), compile_seconds (torch.compile's, before the clock started), tokens_per_step,
  resumed, command, max_iters, max_time, elapsed (seconds trained before this start), time (Unix seconds),
  init_from.
  A resumed run writes another start and goes on.
- step: loss (this batch's), lr, tokens_per_sec, elapsed (with log_every above 1, read and written that many at
  once: their elapsed spread evenly over the time the batch of steps took).
- eval: train_loss, val_loss, best_val, saved (weights saved at this evaluation), sample, elapsed.
- done (the last step was reached) or stopped (stopped early, best weights kept): how the run ended.
A line cut short by a kill or a full disk is skipped by every reader: the rest of the log still tells the story.
"""

from __future__ import annotations

import json
from pathlib import Path

from gpt.errors import WeightsError
from gpt.sharing.weights import atomic_write_text

METRICS_FILE = "metrics.jsonl"
ENDS = ("done", "stopped")


def path(folder: str | Path) -> Path:
    return Path(folder) / METRICS_FILE


def exists(folder: str | Path) -> bool:
    return path(folder).is_file()


def changed_ns(folder: str | Path) -> int:
    """When the log last changed (raises OSError when there is none): a cache key, and a live run's heartbeat."""
    return path(folder).stat().st_mtime_ns


def events(folder: str | Path) -> list[dict]:
    """Every whole event in the log, in order; [] when there is no log."""
    try:
        lines = path(folder).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn in the middle of an append
        if isinstance(event, dict):
            found.append(event)
    return found


def ending(found: list[dict]) -> str | None:
    """How the run ended: 'done', 'stopped', or None (still going, or cut off) -- the last event says."""
    last = found[-1].get("event") if found else None
    return last if last in ENDS else None


def append(folder: str | Path, event: dict) -> None:
    """Add one event (raises OSError, e.g. on a full disk)."""
    with open(path(folder), "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")


def remove(folder: str | Path) -> None:
    path(folder).unlink(missing_ok=True)


def trim(folder: str | Path, step: int) -> None:
    """Forget what was logged after step (and how the run ended): a resumed run's curve continues seamlessly."""
    if not exists(folder):
        return
    kept = [e for e in events(folder) if e.get("step", 0) <= step and e.get("event") not in ("start", *ENDS)]
    atomic_write_text(path(folder), "".join(json.dumps(e) + "\n" for e in kept))


NUMBERS = {"step": ("loss",), "eval": ("train_loss", "val_loss")}  # what the readers (card, chart) take as numbers


def check_log(data: bytes) -> None:
    """A WeightsError unless data is a log these readers take: UTF-8, one JSON object a line, each with an event
    and a whole step, steps' and evaluations' losses numbers (a log made elsewhere, uploaded)."""
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise WeightsError(f"{METRICS_FILE} is not UTF-8 text") from None
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            event = None
        numbers = NUMBERS.get(event.get("event"), ()) if isinstance(event, dict) else ()
        if not (isinstance(event, dict) and isinstance(event.get("event"), str) and type(event.get("step")) is int
                and all(isinstance(event.get(k), (int, float)) and not isinstance(event.get(k), bool)
                        for k in numbers)):
            raise WeightsError(f"{METRICS_FILE}, line {i}, is not an event of a run's log (a JSON object with "
                               f"\"event\", a whole \"step\" and, for a step or an evaluation, its losses)")


def empty_log() -> dict:
    return {"config": {}, "device": "", "params": None, "command": None, "init_from": None, "evals": [], "steps": [],
            "end": None}


def read_log(folder: str | Path) -> dict | None:
    """The run in folder's log: config, device, params, command, init_from, evals, (step, loss) pairs and how it
    ended (see ending); None if there is no log."""
    if not exists(folder):
        return None
    found = events(folder)
    log = empty_log()
    for event in found:
        if event.get("event") == "start":
            log["config"], log["device"] = event.get("config", {}), event.get("device", "")
            log["params"], log["command"] = event.get("params"), event.get("command")
            log["init_from"] = event.get("init_from") or log["init_from"]  # a resumed run keeps its origin
        elif event.get("event") == "eval":
            log["evals"].append(event)
        elif event.get("event") == "step":
            log["steps"].append((event["step"], event["loss"]))
    log["end"] = ending(found)
    return log
