"""One training run at a time, in a background thread owned by the process, watched by any number of viewers.

A server keeps a single TrainingRunner: every viewer reads the same status(), and a second start() while a run
is going is refused with a BusyError, whoever asks.
"""

from __future__ import annotations

import functools
import threading
import time
import traceback
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from gpt.training import budget
from gpt.ladder import rungs as ladder
from gpt.training import log as runlog
from gpt.sharing import weights
from gpt.sharing.card import params_text
from gpt.config import whole_number
from gpt.data import SHAKESPEARE, load_text
from gpt.errors import BusyError, ConfigError, GPTError
from gpt.model import GPTLanguageModel, param_count
from gpt.training.trainer import Trainer, TrainConfig

SHAKESPEARE_VOCAB = 65  # Tiny Shakespeare's characters: the ladder's text


def check_run_name(name: str, root: Path) -> Path:
    """The folder for a new run, or a ConfigError saying why the name cannot be used."""
    name = weights.check_name(name)
    out = Path(root) / name
    if name == "default" or (out / weights.MODEL_FILE).exists() or (out / weights.STATE_FILE).exists():
        raise ConfigError(f"weights/{name} already exists: choose another run name")
    return out


@dataclass(frozen=True)
class Limits:
    """What a run may use, by who started it (a visitor on a public app); None where nothing is limited.

    The runner holds every way a run starts (Start, carry on, fine-tune, the ladder) to them, in limited().
    """
    max_steps: int
    max_seconds: float
    max_params: int


def limited(config: TrainConfig, limits: Limits | None, trained: float = 0.0, share: int = 1) -> TrainConfig:
    """config held to limits: its steps (more are refused; a timed run's "no step limit" gets them), and its
    clock: the minutes become (or clamp) max_time, so the run ends annealed when they are up and its ETA shows
    them.

    trained: seconds the run has trained already (carried on); share: the runs the minutes are split between
    (a ladder's rungs)."""
    if limits is None:
        return config
    if config.max_iters > limits.max_steps:
        raise ConfigError(f"at most {limits.max_steps:,} steps here (you asked for {config.max_iters:,})")
    return replace(config, max_iters=min(config.max_iters or limits.max_steps, limits.max_steps),
                   max_time=budget.within(config.max_time, trained + limits.max_seconds / share))


def check_params(config: TrainConfig, vocab_size: int, max_params: int, what: str = "") -> None:
    """A ConfigError for a model above max_params, worked out from the settings before anything is built."""
    n = param_count(config.model_config(vocab_size))
    if n > max_params:
        raise ConfigError(f"{what or 'this model'} would have {params_text(n)} parameters; the limit here is "
                          f"{max_params / 1e6:g}M: " + ("choose smaller rungs" if what else
                                                        "fewer layers or a smaller n_embd"))


def interrupted_run(root: Path) -> dict | None:
    """The newest run under root if its log never reached an end: the server stopped in the middle of it.

    Also removes the temporary files a kill in the middle of a save left in the run folders.
    """
    runs = [p for p in Path(root).iterdir() if (p / weights.STATE_FILE).is_file()] if Path(root).is_dir() else []
    for folder in runs:
        weights.remove_temporary_files(folder, older_than=600)  # younger: perhaps a command line saving now
    if not runs:
        return None
    folder = max(runs, key=lambda p: (p / weights.STATE_FILE).stat().st_mtime)
    try:
        meta = weights.read_training_meta(folder)
    except (OSError, GPTError):
        return None
    run = runlog.read(folder)
    if run is None or not run.events or run.state != "interrupted":
        return None
    config = meta.get("config") if isinstance(meta, dict) else None
    if not isinstance(config, dict) or not all(isinstance(v, int) for v in (meta.get("step"), config.get("max_iters"))):
        return None
    return {"run": folder.name, "step": meta["step"], "max_iters": config["max_iters"],
            "best_val": meta.get("best_val")}


def rung_row(rung: ladder.Rung, run: runlog.RunRecord) -> dict:
    """A rung's row of the ladder's table and chart, from its record: live (state waiting, training, then how it
    ended) or read from its folder after a restart."""
    return {"rung": rung.number, "name": rung.name, "change": rung.change, "lecture_val": rung.lecture_val,
            "params": run.params, "val": run.best_val, "time": run.took,
            "sample": run.sample, "curve": [(e["step"], e["val_loss"]) for e in run.evals],
            "state": run.ended or run.state}


class TrainingRunner:
    def __init__(self, root: str | Path = "weights", max_text_bytes: int | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.root = Path(root)
        self.max_text_bytes = max_text_bytes  # for uploaded texts
        self.clock = clock  # the runs' clock (their minutes, ETA, tokens/s); tests pass a SteadyClock
        self._lock = threading.Lock()
        self.trainer: Trainer | None = None
        # the run every viewer watches (each rung in turn, in a ladder); its state: idle -> running -> stopping ->
        # finished | stopped | failed
        self.run = runlog.RunRecord()
        self.ladder: list[tuple[ladder.Rung, runlog.RunRecord]] = []  # each rung's record while a ladder runs
        self.started_by: str | None = None  # who started the run (a name the caller chooses), to say and to check
        self.started_at: float | None = None
        self.deadline: float | None = None  # wall-clock end (time.time()) of a run with a time limit
        self._stop = threading.Event()
        self.interrupted: dict | None = None  # the run a restart cut short (recover): told until another starts

    def recover(self) -> None:
        """After a restart: find the run the server stopped in the middle of, and tidy what its kill left."""
        with self._lock:
            if not self.running:
                self.interrupted = interrupted_run(self.root)

    @property
    def running(self) -> bool:
        return self.run.state in ("running", "stopping")

    def start(self, config: TrainConfig, name: str, text_name: str | None = None, *, started_by: str | None = None,
              limits: Limits | None = None) -> Path:
        """Build the run (errors surface here, before anything starts), then train in a background thread.

        text_name: how messages call an uploaded text (its own name, not where the server keeps it).
        limits: what the caller's run may use (a bigger model is refused before it is built).
        """
        with self._lock:
            self._check_idle()
            out = check_run_name(name, self.root)
            config = limited(config, limits)
            if config.data != SHAKESPEARE or limits is not None:
                text = load_text(config.data, self.max_text_bytes, text_name)  # explained before anything starts
                if limits is not None:
                    check_params(config, len(set(text)), limits.max_params)
            trainer = Trainer(config, out, callbacks=[self._on_event], stop=self._stop, clock=self.clock)
            self._launch(trainer, started_by, limits)
        return out

    def resume(self, name: str, max_iters: int, *, started_by: str | None = None,
               limits: Limits | None = None) -> Path:
        """Carry the saved run weights/<name> on up to max_iters steps, exactly as `python -m train --resume`."""
        with self._lock:
            self._check_idle()
            out = self.root / weights.check_name(name)
            if not (out / weights.STATE_FILE).is_file():
                raise ConfigError(f"weights/{out.name} holds no training state, so it cannot be carried on: only runs "
                                  f"trained here can (start a new run from its weights instead)")
            meta = weights.read_training_meta(out)
            max_iters = whole_number("steps", max_iters)
            if max_iters <= meta["step"]:
                raise ConfigError(f"{out.name} is already at step {meta['step']:,}: give a total of more steps than "
                                  f"that")
            # carried on to a number of steps: whatever clock it had is done with (a limited one gets its minutes)
            config = limited(replace(Trainer.saved_config(out), max_iters=max_iters, max_time=0.0), limits,
                             meta["elapsed"])
            trainer = Trainer(config, out, resume=True, callbacks=[self._on_event], stop=self._stop, clock=self.clock)
            self._launch(trainer, started_by, limits)
        return out

    def _launch(self, trainer: Trainer, started_by: str | None = None, limits: Limits | None = None) -> None:
        """Train one built run in the background (called with the lock held)."""
        self._begin(trainer.config, trainer.out_dir, trainer)
        self._record(started_by, limits)
        self.ladder = []
        threading.Thread(target=self._run, args=([lambda: trainer],), name="training", daemon=True).start()

    def start_ladder(self, rungs: list[int], max_iters: int | None = None, *, started_by: str | None = None,
                     limits: Limits | None = None) -> None:
        """Train the chosen rungs of the lecture ladder one after another, in the background."""
        with self._lock:
            self._check_idle()
            chosen = [r for r in ladder.RUNGS if r.number in set(rungs)]
            if not chosen:
                raise ConfigError("choose at least one rung of the ladder")
            overrides = {"max_iters": whole_number("steps per rung", max_iters)} if max_iters is not None else {}
            # settings and limits checked here, up front: the minutes are shared between the rungs
            configs = [limited(ladder.train_config(r, **overrides), limits, share=len(chosen)) for r in chosen]
            if limits is not None:
                for r, c in zip(chosen, configs):
                    check_params(c, SHAKESPEARE_VOCAB, limits.max_params, f"rung {r.number}")
            # each rung's Trainer is built in the background when its turn comes: reading the text and building
            # the model stays off the lock that every viewer's poll waits on
            makers = [functools.partial(Trainer, c, self.root / "ladder" / f"rung-{r.number}",
                                        callbacks=[self._on_event, functools.partial(self._on_rung_event, i)],
                                        stop=self._stop, model_factory=functools.partial(ladder.build, r.number),
                                        clock=self.clock)
                      for i, (r, c) in enumerate(zip(chosen, configs))]
            self._begin(configs[0], self.root / "ladder" / f"rung-{chosen[0].number}")
            self._record(started_by, limits)
            self.ladder = [(r, runlog.RunRecord(state="waiting")) for r in chosen]
            threading.Thread(target=self._run, args=(makers,), name="ladder", daemon=True).start()

    def _check_idle(self) -> None:
        if self.running:
            raise BusyError("a training run is already going (perhaps started by someone else): "
                            "stop it first, or watch it")

    def _record(self, started_by: str | None, limits: Limits | None) -> None:
        self.started_by, self.started_at = started_by, time.time()
        # when a limited run (or ladder) will have ended at the latest: its max_time sees to it
        self.deadline = self.started_at + limits.max_seconds if limits else None

    def _begin(self, config: TrainConfig, out_dir: Path, trainer: Trainer | None = None) -> None:
        """Make this run the one every viewer watches (called with the lock held)."""
        if not self.running:
            self._stop.clear()
        state = self.run.state if self.running else "running"  # a ladder's next rung: still stopping, perhaps
        self.trainer, self.interrupted = trainer, None
        self.run = runlog.RunRecord(name=self._name(out_dir), folder=out_dir, state=state, config=asdict(config))

    def stop(self) -> bool:
        """Ask the run to stop after its current step; False if nothing is running."""
        with self._lock:
            if not self.running:
                return False
            self.run.state = "stopping"
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
            self.run.state, self.run.error = state, error

    def _on_rung_event(self, i: int, event: dict) -> None:
        with self._lock:
            run = self.ladder[i][1]
            run.add(event)
            run.state = "training"

    def _on_event(self, event: dict) -> None:
        with self._lock:
            self.run.add(event)

    def status(self) -> dict:
        """Everything a viewer shows, copied under the lock: safe to read from any thread."""
        with self._lock:
            return self.run.status(ladder=[rung_row(r, run) for r, run in self.ladder], started_by=self.started_by,
                                   started_at=self.started_at, deadline=self.deadline, interrupted=self.interrupted)

    def _name(self, folder: Path) -> str:
        """A run folder as the app names it: its path under the weights folder."""
        try:
            return folder.relative_to(self.root).as_posix()
        except ValueError:
            return folder.name

    def snapshot(self) -> GPTLanguageModel:
        """The model being trained, as it is right now (a copy, for generating while training goes on)."""
        trainer = self.trainer
        if trainer is None:
            raise BusyError("no model is training right now: start a run first")
        return trainer.snapshot()
