"""One training run at a time, in a background thread owned by the process, watched by any number of viewers.

A server keeps a single TrainingRunner: every viewer reads the same status(), and a second start() while a run
is going is refused with a BusyError, whoever asks.
"""

from __future__ import annotations

import functools
import threading
import traceback
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from gpt import ladder, weights
from gpt.config import whole_number
from gpt.data import SHAKESPEARE, load_text
from gpt.errors import BusyError, ConfigError, GPTError
from gpt.model import GPTLanguageModel
from gpt.trainer import Trainer, TrainConfig

MAX_STEP_POINTS = 400  # the per-step loss curve is thinned to this many points for the chart


def check_run_name(name: str, root: Path) -> Path:
    """The folder for a new run, or a ConfigError saying why the name cannot be used."""
    name = weights.check_name(name)
    out = Path(root) / name
    if name == "default" or (out / weights.MODEL_FILE).exists() or (out / weights.STATE_FILE).exists():
        raise ConfigError(f"weights/{name} already exists: choose another run name")
    return out


class TrainingRunner:
    def __init__(self, root: str | Path = "weights", max_text_bytes: int | None = None):
        self.root = Path(root)
        self.max_text_bytes = max_text_bytes  # for uploaded texts
        self._lock = threading.Lock()
        self.trainer: Trainer | None = None
        self.state = "idle"  # idle -> running -> stopping -> finished | stopped | failed
        self.error = ""
        self.out_dir: Path | None = None
        self.config: TrainConfig | None = None
        self.steps: list[tuple[int, float]] = []  # (step, batch loss)
        self.evals: list[dict] = []  # step, train_loss, val_loss, sample, elapsed
        self.last_step: dict = {}
        self.start_info: dict = {}
        self.ladder: list[dict] = []  # one row per rung while a ladder runs: the table and the curves
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        return self.state in ("running", "stopping")

    def start(self, config: TrainConfig, name: str) -> Path:
        """Build the run (errors surface here, before anything starts), then train in a background thread."""
        with self._lock:
            self._check_idle()
            out = check_run_name(name, self.root)
            if config.data != SHAKESPEARE:
                load_text(config.data, self.max_text_bytes)  # size and UTF-8, explained before anything starts
            self._launch(Trainer(config, out, callbacks=[self._on_event], stop=self._stop))
        return out

    def resume(self, name: str, max_iters: int) -> Path:
        """Carry the saved run weights/<name> on up to max_iters steps, exactly as `python -m train --resume`."""
        with self._lock:
            self._check_idle()
            out = self.root / weights.check_name(name)
            if not (out / weights.STATE_FILE).is_file():
                raise ConfigError(f"weights/{out.name} holds no training state, so it cannot be carried on: only runs "
                                  f"trained here can (start a new run from its weights instead)")
            step = weights.read_training_meta(out)["step"]
            max_iters = whole_number("steps", max_iters)
            if max_iters <= step:
                raise ConfigError(f"{out.name} is already at step {step:,}: give a total of more steps than that")
            config = replace(Trainer.saved_config(out), max_iters=max_iters)
            self._launch(Trainer(config, out, resume=True, callbacks=[self._on_event], stop=self._stop))
        return out

    def _launch(self, trainer: Trainer) -> None:
        """Train one built run in the background (called with the lock held)."""
        self._begin(trainer.config, trainer.out_dir, trainer)
        self.ladder = []
        threading.Thread(target=self._run, args=([lambda: trainer],), name="training", daemon=True).start()

    def start_ladder(self, rungs: list[int], max_iters: int | None = None) -> None:
        """Train the chosen rungs of the lecture ladder one after another, in the background."""
        with self._lock:
            self._check_idle()
            chosen = [r for r in ladder.RUNGS if r.number in set(rungs)]
            if not chosen:
                raise ConfigError("choose at least one rung of the ladder")
            overrides = {"max_iters": whole_number("steps per rung", max_iters)} if max_iters is not None else {}
            configs = [ladder.train_config(r, **overrides) for r in chosen]  # settings checked here, up front
            # each rung's Trainer is built in the background when its turn comes: reading the text and building
            # the model stays off the lock that every viewer's poll waits on
            makers = [functools.partial(Trainer, c, self.root / "ladder" / f"rung-{r.number}",
                                        callbacks=[self._on_event, functools.partial(self._on_rung_event, i)],
                                        stop=self._stop, model_factory=functools.partial(ladder.build, r.number))
                      for i, (r, c) in enumerate(zip(chosen, configs))]
            self._begin(configs[0], self.root / "ladder" / f"rung-{chosen[0].number}")
            self.ladder = [{"rung": r.number, "name": r.name, "change": r.change, "lecture_val": r.lecture_val,
                            "params": None, "val": None, "time": None, "sample": "", "curve": [],
                            "state": "waiting"} for r in chosen]
            threading.Thread(target=self._run, args=(makers,), name="ladder", daemon=True).start()

    def _check_idle(self) -> None:
        if self.running:
            raise BusyError("a training run is already going (perhaps started by someone else): "
                            "stop it first, or watch it")

    def _begin(self, config: TrainConfig, out_dir: Path, trainer: Trainer | None = None) -> None:
        """Make this run the one every viewer watches (called with the lock held)."""
        self.trainer, self.config, self.out_dir = trainer, config, out_dir
        self.steps, self.evals, self.last_step, self.start_info = [], [], {}, {}
        if self.state not in ("running", "stopping"):
            self.state, self.error = "running", ""
            self._stop.clear()

    def stop(self) -> bool:
        """Ask the run to stop after its current step; False if nothing is running."""
        with self._lock:
            if not self.running:
                return False
            self.state = "stopping"
            self._stop.set()
            return True

    def _run(self, makers: list[Callable[[], Trainer]]) -> None:
        state, error = "finished", ""
        try:
            for make in makers:
                if self._stop.is_set():
                    break
                trainer = make()
                with self._lock:
                    self._begin(trainer.config, trainer.out_dir, trainer)
                if trainer.run()["event"] == "stopped":
                    state = "stopped"
        except GPTError as e:
            state, error = "failed", str(e)
        except Exception as e:  # a bug or out of memory: keep the server alive and say what happened
            traceback.print_exc()
            state, error = "failed", f"training failed: {type(e).__name__}: {e}"
        with self._lock:
            self.state, self.error = state, error

    def _on_rung_event(self, i: int, event: dict) -> None:
        with self._lock:
            rung = self.ladder[i]
            if event["event"] == "start":
                rung["state"], rung["params"] = "training", event["params"]
            elif event["event"] == "eval":
                rung["curve"].append((event["step"], event["val_loss"]))
                rung["val"] = min(v for _, v in rung["curve"])
                rung["sample"] = event["sample"]
            elif event["event"] in ("done", "stopped"):
                rung["state"], rung["time"] = event["event"], event["elapsed"]

    def _on_event(self, event: dict) -> None:
        with self._lock:
            kind = event["event"]
            if kind == "start":
                self.start_info = event
            elif kind == "step":
                self.steps.append((event["step"], event["loss"]))
                self.last_step = event
            elif kind == "eval":
                self.evals.append({k: event[k] for k in ("step", "train_loss", "val_loss", "sample", "elapsed")})

    def status(self) -> dict:
        """Everything a viewer shows, copied under the lock: safe to read from any thread."""
        with self._lock:
            step = self.last_step.get("step", self.start_info.get("step", 0))
            max_iters = self.config.max_iters if self.config else 0
            elapsed = self.last_step.get("elapsed", 0.0)
            first = self.start_info.get("step", 0)
            per_step = elapsed / (step - first) if step > first else None
            stride = max(1, len(self.steps) // MAX_STEP_POINTS)
            return {
                "state": self.state,
                "error": self.error,
                "run": self.out_dir.name if self.out_dir else None,
                "out_dir": str(self.out_dir) if self.out_dir else None,
                "step": step,
                "max_iters": max_iters,
                "loss": self.last_step.get("loss"),
                "lr": self.last_step.get("lr"),
                "tokens_per_sec": self.last_step.get("tokens_per_sec"),
                "elapsed": elapsed,
                "eta": per_step * (max_iters - step) if per_step and self.running else None,
                "params": self.start_info.get("params"),
                "config": asdict(self.config) if self.config else None,
                "device": self.start_info.get("device"),
                "best_val": min((e["val_loss"] for e in self.evals), default=None),
                "steps": self.steps[::stride],
                "evals": list(self.evals),
                "ladder": [{**r, "curve": list(r["curve"])} for r in self.ladder],
            }

    def snapshot(self) -> GPTLanguageModel:
        """The model being trained, as it is right now (a copy, for generating while training goes on)."""
        trainer = self.trainer
        if trainer is None:
            raise BusyError("no model is training right now: start a run first")
        return trainer.snapshot()
