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

The events read into one typed record, RunRecord (RunRecord.add: the one place that reads them), which every view
of a run shares: the runner feeds it the trainer's events as they happen, `read` replays a log into it (a past run,
the shipped weights' replay, gpt.training.runs' list), and RunRecord.status() is the dict a viewer polls.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from gpt.data import SHAKESPEARE
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


MAX_STEP_POINTS = 400  # the per-step loss curve is thinned to this many points for a viewer's chart
LIVE_SECONDS = 120  # a log written this recently, with no end, belongs to a run that is still training


@dataclass
class RunRecord:
    """One run: its settings, state, progress, evaluations, samples and how it ended."""
    name: str | None = None  # as the app names it: its path under the weights folder (ladder/rung-6 for a rung)
    folder: Path | None = None
    # idle, running, stopping, finished, stopped, failed (the runner's); finished, stopped, interrupted, training
    # (a log's: outcome); replay (the shipped weights' training, played back)
    state: str = "idle"
    error: str = ""
    config: dict = field(default_factory=dict)  # the TrainConfig's fields
    params: int | None = None
    device: str = ""
    command: str | None = None
    init_from: str | None = None  # where a fine-tuned run started (a resumed run keeps its origin)
    started: float | None = None  # when it first started (Unix seconds)
    first_step: int = 0  # where its latest start began (a resumed run's saved step), and how long it had trained
    first_elapsed: float = 0.0
    step: int = 0
    elapsed: float = 0.0  # seconds trained, as of the latest step or evaluation: the clock a viewer sees
    steps: list[tuple[int, float]] = field(default_factory=list)  # (step, batch loss)
    last_step: dict = field(default_factory=dict)  # the latest step event: its lr and tokens/s
    evals: list[dict] = field(default_factory=list)  # the eval events
    ended: str | None = None  # "done" or "stopped"; None: still going, or cut off
    took: float | None = None  # seconds it trained in all, its final evaluation included (once it has ended)
    events: int = 0  # how many it has read

    def add(self, event: dict) -> None:
        """Take one event of the log (or of a live run)."""
        kind = event.get("event")
        if kind == "start":
            self.config = event.get("config") or self.config
            self.params, self.device = event.get("params"), event.get("device", "")
            self.command, self.ended, self.took = event.get("command"), None, None
            self.init_from = event.get("init_from") or self.init_from
            if self.started is None and isinstance(event.get("time"), (int, float)):
                self.started = event["time"]
            self.first_step, self.first_elapsed = event.get("step", 0), event.get("elapsed", 0.0)
        elif kind == "step":
            self.steps.append((event["step"], event["loss"]))
            self.last_step = event
        elif kind == "eval":
            self.evals.append(event)
        elif kind in ENDS:
            self.ended, self.took = kind, event.get("elapsed", self.elapsed)
        self.step = max(self.step, event.get("step", 0))
        if kind in ("start", "step", "eval") and isinstance(event.get("elapsed"), (int, float)):
            self.elapsed = event["elapsed"]
        self.events += 1

    @property
    def max_iters(self) -> int:
        return self.config.get("max_iters", 0)

    @property
    def max_time(self) -> float:
        return self.config.get("max_time", 0.0)

    @property
    def best_val(self) -> float | None:
        return min((e["val_loss"] for e in self.evals), default=None)

    @property
    def loss(self) -> float | None:
        return self.steps[-1][1] if self.steps else None

    @property
    def sample(self) -> str:
        return self.evals[-1].get("sample", "") if self.evals else ""

    def outcome(self, changed: float | None = None, now: float | None = None) -> str:
        """How a run on disk stands, from its log: finished, stopped, training (given its log's last change and now:
        written within LIVE_SECONDS and not ended) or interrupted (cut off by a restart or a kill -- finished if it
        had reached its last step, as a log rebuilt from a model card has)."""
        if self.ended:
            return "finished" if self.ended == "done" else "stopped"
        if changed is not None and now is not None and now - changed < LIVE_SECONDS:
            return "training"
        return "finished" if self.step >= self.config.get("max_iters", math.inf) else "interrupted"

    def eta(self) -> float | None:
        """Seconds left: a timed run counts down its clock, unless its steps run out first."""
        done = self.step - self.first_step
        per_step = (self.elapsed - self.first_elapsed) / done if done > 0 else None
        eta = per_step * (self.max_iters - self.step) if per_step and self.max_iters else None
        if self.max_time:
            eta = min(max(0.0, self.max_time - self.elapsed), eta if eta is not None else math.inf)
        return eta

    def until(self, step: int) -> RunRecord:
        """The run as it was at step: a replay's frame."""
        evals = [e for e in self.evals if e["step"] <= step]
        return replace(self, state="replay", step=step, evals=evals, steps=[p for p in self.steps if p[0] <= step],
                       last_step={}, elapsed=evals[-1]["elapsed"] if evals else 0.0)

    def status(self, **extra) -> dict:
        """What a viewer polls, as JSON: the one place it is made (the runner adds who started it, its clock and the
        ladder in extra). A copy: safe to hand to another thread."""
        config = dict(self.config) or None
        if config and config.get("data", SHAKESPEARE) != SHAKESPEARE:
            config["data"] = Path(config["data"]).name  # an uploaded text by its name, never where the server keeps it
        running = self.state in ("running", "stopping")
        return {
            "state": self.state,
            "error": self.error,
            "run": self.name,
            "out_dir": str(self.folder) if self.folder else None,
            "step": self.step,
            "max_iters": self.max_iters,
            "loss": self.loss,
            "lr": self.last_step.get("lr"),
            "tokens_per_sec": self.last_step.get("tokens_per_sec"),
            "elapsed": self.elapsed,
            "max_time": self.max_time,
            "eta": self.eta() if running else None,
            "params": self.params,
            "config": config,
            "device": self.device,
            "best_val": self.best_val,
            "steps": self.steps[::max(1, len(self.steps) // MAX_STEP_POINTS)],
            "evals": list(self.evals),
            "ladder": [],
            "started_by": None,
            "started_at": None,
            "deadline": None,
            "interrupted": None,
            **extra,
        }


def read(folder: str | Path, name: str | None = None) -> RunRecord | None:
    """The run in folder, from its log (None if there is none), its state its outcome()."""
    if not exists(folder):
        return None
    run = RunRecord(name=name or Path(folder).name, folder=Path(folder))
    for event in events(folder):
        run.add(event)
    run.state = run.outcome()
    return run


def empty_log() -> dict:
    return log_dict(RunRecord())


def log_dict(run: RunRecord) -> dict:
    """A record as the model card reads it: config, device, params, command, init_from, evals, (step, loss) pairs and
    how it ended."""
    return {"config": run.config, "device": run.device, "params": run.params, "command": run.command,
            "init_from": run.init_from, "evals": run.evals, "steps": run.steps, "end": run.ended}


def read_log(folder: str | Path) -> dict | None:
    """The run in folder's log, as the model card reads it (log_dict); None if there is no log."""
    run = read(folder)
    return None if run is None else log_dict(run)
