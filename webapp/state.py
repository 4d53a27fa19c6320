"""What every tab shares: the server's one training runner, the weights folders, and how a chart is fed."""

from __future__ import annotations

import os
import shutil
import threading
import time
import weakref
from pathlib import Path

import gradio as gr
import pandas as pd

from gpt.sharing import weights
from gpt.device import describe_device, pick_device
from gpt.generation.engine_process import EngineProcess
from gpt.errors import GPTError
from gpt.training.presets import LECTURE_VAL
from gpt.sharing.pretrained import load_cached
from gpt.training.background import TrainingRunner
from gpt.generation.precision import inference_model, serving_dtype
from webapp import access

ROOT = Path(__file__).resolve().parent.parent  # the project: app.py, webapp/, gpt/, requirements.txt
# a clone keeps runs beside the code; an installed app (gpt-app) in ./weights, where it copies the default once
WEIGHTS = Path(os.environ.get("GPT_WEIGHTS_DIR") or (ROOT / "weights" if (ROOT / "weights").is_dir() else "weights"))
MAX_UPLOAD_MB = 10
LIVE = "the model training now"

runner = TrainingRunner(WEIGHTS, max_text_bytes=MAX_UPLOAD_MB * 1_000_000)
engines = EngineProcess()  # generation: on a CPU in a process of its own, so the web server never waits on it
DEVICE = describe_device(pick_device())
PRESET = "gpu" if pick_device().type == "cuda" else "cpu"  # what the Train tab offers first


def startup() -> None:
    """What the app does once, when it starts (not when a module is imported): the shipped weights in place, and
    what a server stopped in the middle of a run left behind, found and tidied (TrainingRunner.recover)."""
    if not (WEIGHTS / "default").is_dir():
        shutil.copytree(weights.default_weights(), WEIGHTS / "default")
    runner.recover()


def stop_training(profile: gr.OAuthProfile | None, request: gr.Request):
    """Stop the run after its current step; the best weights so far are kept."""
    if runner.running and not access.may_stop(profile, request, runner.started_by):
        raise gr.Error(f"Only whoever started this run ({access.shown_name(runner.started_by)}) or the owner may "
                       "stop it. It ends by itself; watch it, or start your own when it is done.",
                       print_exception=False)
    if runner.stop():
        return "Stopping after this step; the best weights so far are kept."
    return "No run is going."




def saved_weights() -> list[str]:
    """Saved weights, newest first after 'default', then the ladder's rungs (ladder/rung-N)."""
    return weights.list_weights(WEIGHTS) + [f"ladder/{n}" for n in sorted(weights.list_weights(WEIGHTS / "ladder"))]


def weights_choices(live: bool = True) -> list[str]:
    """Saved weights and the ladder's rungs; the model training now first while a run goes (if live)."""
    choices = saved_weights()
    if live and runner.running:
        choices = [LIVE] + choices
    return choices


def refresh_weights(current, choices=None):
    """The weights dropdown with an up-to-date list, keeping the current choice while it exists."""
    choices = weights_choices() if choices is None else choices
    value = current if current in choices else (choices[0] if choices else None)
    return gr.Dropdown(choices=choices, value=value)


def refused(e: Exception) -> gr.Error:
    """The gr.Error a visitor sees for a library error: its message, with the server's own folders written as the
    app names them (a stranger learns nothing of the server's paths)."""
    text = str(e)
    for path, shown in ((WEIGHTS.resolve(), "weights"), (WEIGHTS.absolute(), "weights"), (ROOT, "."),
                        (Path.home(), "~")):
        text = text.replace(str(path), shown)
    return gr.Error(text, print_exception=False)


def weights_folder(name: str) -> Path:
    """The folder of saved weights `name`, or a GPTError for a name that is not in the list."""
    if name in saved_weights():
        return WEIGHTS / name
    raise GPTError(f"no weights named {name!r}: pick one from the list")


def load_weights(name: str, inference: bool = False):
    """The model behind a choice of the weights dropdowns (inference: the faster copy to generate with)."""
    if name == LIVE:
        return live_model() if inference else runner.snapshot()
    return load_cached(weights_folder(name), inference=inference)


SHARED_SNAPSHOT_S = 2.0  # visitors asking for the training model within this long share one copy of it
_live: dict = {}
_live_lock = threading.Lock()


def live_model():
    """A copy of the model training now, to generate with. Taken again once it is SHARED_SNAPSHOT_S old, so a
    classroom asking at once shares one copy, and with it one engine's batch (gpt.generation.engine)."""
    with _live_lock:
        trainer = runner.trainer
        same_run = trainer is not None and _live.get("trainer", lambda: None)() is trainer
        if not same_run or time.monotonic() - _live["taken"] > SHARED_SNAPSHOT_S:
            snapshot = runner.snapshot()  # a BusyError when no run goes
            # the server's one rule, as for saved weights (gpt.sharing.pretrained): never a timing taken while training runs
            model = inference_model(snapshot, serving_dtype(snapshot))
            _live.update(trainer=weakref.ref(trainer), taken=time.monotonic(), model=model)
        return _live["model"]


def duration(seconds) -> str:
    """Seconds for people: 2 h 05 min, 3 min 07 s, 42 s, under 1 s (a ladder's rung); empty for None."""
    if seconds is None:
        return ""
    if 0 < seconds < 1:
        return "under 1 s"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def optional_number(name: str, value, low: int = 0) -> int | None:
    """A whole-number field that may be left empty (a Textbox: gr.Number cannot be empty in the browser).

    None for empty; else an int of at least low, from typed text ("7") or an API's int; else a GPTError."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip().replace(",", "").replace("_", "")
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    if not text.lstrip("-").isdigit() or isinstance(value, bool):
        raise GPTError(f"{name} must be a whole number (or left empty), not {value!r}")
    if int(text) < low:
        raise GPTError(f"{name} must be at least {low}, not {int(text)}")
    return int(text)


def text_stream(name: str, prompt: str, **sampling):
    """The characters of a generation from weights `name`, served by their model's engine, shared with everyone
    generating from the same model at the same time (gpt.generation.engine), in a process of its own on a CPU
    (gpt.generation.engine_process)."""
    model = load_weights(name, inference=True)  # int8 weights where that is faster (see bench/README.md)
    return engines.stream_text(model, prompt, **sampling)


def chart_frame(rows: list[tuple], series: dict, columns: list[str]) -> pd.DataFrame:
    """Rows (x, y, series) for a gr.LinePlot that will be updated live.

    Gradio's chart keeps the series of its first frame: a one-point (invisible) stand-in for each series that
    has no data yet makes it draw them all once they arrive. Explicit dtypes: an empty column would make the
    chart treat the axes as categories.
    """
    y = rows[0][1] if rows else LECTURE_VAL  # a stand-in at a value already on the chart: the axes stay put
    rows = rows + [(0, y, name) for name in series if not any(r[2] == name for r in rows)]
    return pd.DataFrame(rows, columns=columns).astype({columns[0]: "int64", columns[1]: "float64"})
