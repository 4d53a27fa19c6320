"""The Train tab: pick a preset, press Start, and watch the server's one run from every open tab."""

from __future__ import annotations

import html
import math
import time
from pathlib import Path

import gradio as gr
import pandas as pd

from gpt.card import COLORS, params_text
from gpt.config import GPTConfig
from gpt.data import SHAKESPEARE
from gpt.errors import GPTError
from gpt.estimate import estimate_time
from gpt.presets import LECTURE_VAL, PRESETS
from gpt.trainer import TrainConfig
from webapp import access
from webapp.state import (DEVICE, MAX_UPLOAD_MB, WEIGHTS, chart_frame, refused, runner, weights_choices,
                          weights_folder)
from webapp.uploads import uploaded_file

FIELDS = ["n_layer", "n_head", "n_embd", "block_size", "batch_size", "learning_rate", "max_iters", "dropout",
          "eval_interval", "seed"]
LECTURE_LINE = f"lecture: {LECTURE_VAL}"
SERIES = {"train (each batch)": COLORS["train (each batch)"], "train": COLORS["train"], "val": COLORS["val"],
          LECTURE_LINE: COLORS["lecture"]}
MAX_MINUTES = 24 * 60
UNTRAINED = math.log(GPTConfig.vocab_size)  # the loss of a model that knows nothing of Tiny Shakespeare's characters
FIRST_STEPS = 100  # the chart's steps before a run has made more: whole-step ticks, not 0.05 of a step


def preset_values(preset: str) -> list:
    config = TrainConfig.from_preset(preset)
    return [getattr(config, f) for f in FIELDS]


def start_training(preset, n_layer, n_head, n_embd, block_size, batch_size, learning_rate, max_iters, dropout,
                   eval_interval, seed, text_source, text_file, run_name, minutes=0, init_from="",
                   profile: gr.OAuthProfile | None = None, request: gr.Request = None):
    """Start a training run in the server's background thread; every viewer sees it. Returns a message.

    minutes above 0 trains for that long instead of max_iters, ending annealed at the deadline.
    init_from: saved weights to start from (fine-tune; their model shape is used), or empty for from scratch."""
    access.require_training(profile)
    values = dict(zip(FIELDS, [n_layer, n_head, n_embd, block_size, batch_size, learning_rate, max_iters, dropout,
                               eval_interval, seed]))
    caps = access.caps(profile)
    try:
        if caps and isinstance(max_iters, (int, float)) and max_iters > caps.max_steps:
            raise GPTError(f"at most {caps.max_steps:,} iterations here (you asked for {max_iters:,.0f})")
        values["max_time"] = time_limit(minutes)
        if text_source == "My own text":
            if not text_file:
                raise GPTError("upload a .txt file first, or choose Tiny Shakespeare")
            values["data"] = str(uploaded_file(text_file, _app["demo"]))  # never a file the server merely has
        else:
            values["data"] = SHAKESPEARE
        if init_from:
            values["init_from"] = str(weights_folder(init_from))
        config = TrainConfig.from_preset(preset, **values)
        name = run_name or f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}"
        if not runner.running:  # a busy runner refuses below, before anything is removed
            access.make_room(WEIGHTS, keep=name)
        out = runner.start(config, name, Path(values["data"]).name, started_by=access.starter(profile, request),
                           max_params=caps.max_params if caps else None,
                           max_seconds=caps.max_minutes * 60 if caps else None)
    except GPTError as e:
        raise refused(e)
    started = f" from the weights of **{init_from}** (their shape: the layers, heads, width and block)" \
        if init_from else ""
    return f"Started **{out.name}**{started} on {DEVICE}. Every open tab shows this run."


def estimate(preset, *settings_and_minutes) -> str:
    """The chosen settings' training time on this device (or, training for some minutes, about how many steps),
    from a timed step of their size (remembered per size)."""
    if runner.running:
        return "*The time estimate waits for the current run to end: measuring now would slow it down.*"
    *settings, minutes = settings_and_minutes
    try:
        config = TrainConfig.from_preset(preset, **dict(zip(FIELDS, settings)), max_time=time_limit(minutes))
        guess = estimate_time(config)
    except (GPTError, ValueError, TypeError) as e:
        return f"*No estimate: {e}*"
    except RuntimeError as e:  # e.g. out of memory on the device: the run itself would fail the same way
        return f"*No estimate: these settings do not fit on {DEVICE} ({str(e).splitlines()[0]})*"
    measured = f"{guess.step_seconds * 1000:,.0f} ms a step, measured; {_duration(guess.eval_seconds)} an evaluation"
    if config.max_time:
        return f"Trains for {_duration(config.max_time)} on {DEVICE}: **about {guess.steps:,} steps** ({measured})"
    return f"Estimated time on {DEVICE}: **about {_duration(guess.seconds)}** ({measured})"


def time_limit(minutes) -> float:
    """Seconds from the "Train for" minutes (0 or empty: run the iterations), or a GPTError a person can act on."""
    if minutes in (None, ""):
        return 0.0
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not 0 <= minutes <= MAX_MINUTES:
        raise GPTError(f"Train for: give 0 (run the iterations) up to {MAX_MINUTES} minutes, not {minutes!r}")
    return 60.0 * minutes


def stop_training(profile: gr.OAuthProfile | None, request: gr.Request):
    """Stop the run after its current step; the best weights so far are kept."""
    if runner.running and not access.may_stop(profile, request, runner.started_by):
        raise gr.Error(f"Only whoever started this run ({access.shown_name(runner.started_by)}) or the owner may "
                       "stop it. It ends by itself; watch it, or start your own when it is done.",
                       print_exception=False)
    if runner.stop():
        return "Stopping after this step; the best weights so far are kept."
    return "No run is going."


def training_status() -> dict:
    """The run's state, step, losses, tokens/s, ETA and samples, as JSON."""
    status = runner.status()
    status["steps"] = [list(s) for s in status["steps"]]
    status["started_by"] = access.shown_name(status["started_by"]) or None  # never an anonymous starter's session
    return status


def _duration(seconds) -> str:
    seconds = int(seconds or 0)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def interrupted_html(run: dict) -> str:
    """The run the server was training when it stopped (a restart, a crash): where it got to, how to go on."""
    name = html.escape(run["run"])
    best = f" (best val loss {run['best_val']:.3f})" if isinstance(run.get("best_val"), (int, float)) else ""
    return (f"<div class='status'><div>The run <b>{name}</b> was interrupted at step {run['step']:,} of "
            f"{run['max_iters']:,} when the server stopped. Its best weights so far{best} are in weights/{name} and "
            f"in the Generate tab.</div><div class='settings'>To carry it on: "
            f"<code>python -m train --out weights/{name} --resume</code>. Or start a new run.</div></div>")


def progress_html(s: dict) -> str:
    if s["state"] == "idle" and s.get("interrupted"):
        return interrupted_html(s["interrupted"])
    if s["state"] == "idle":
        return "<div class='status'>No run yet. Pick a preset, adjust it if you like, and press <b>Start</b>.</div>"
    if s.get("max_time"):  # a timed run: the bar is the clock
        done = 1.0 if s["state"] == "finished" else min(1.0, s["elapsed"] / s["max_time"])
        figures = [f"step <b>{s['step']:,}</b> · training for {_duration(s['max_time'])}"]
    else:
        done = s["step"] / s["max_iters"] if s["max_iters"] else 1.0
        figures = [f"step <b>{s['step']:,}</b> / {s['max_iters']:,}"]
    if s["loss"] is not None:
        figures.append(f"loss {s['loss']:.3f}")
    if s["best_val"] is not None:
        figures.append(f"best val <b>{s['best_val']:.3f}</b>")
    if s["tokens_per_sec"]:
        figures.append(f"{s['tokens_per_sec']:,.0f} tokens/s")
    if s["lr"]:
        figures.append(f"lr {s['lr']:.2e}")
    figures.append(f"elapsed {_duration(s['elapsed'])}")
    if s["eta"] is not None:
        figures.append(f"ETA {_duration(s['eta'])}")
    if s["started_by"] and s["state"] in ("running", "stopping"):  # public: who, and when it ends at the latest
        ends = f" · stops by {time.strftime('%H:%M UTC', time.gmtime(s['deadline']))}" if s["deadline"] else ""
        figures.append(f"started by {access.shown_name(s['started_by'])} at "
                       f"{time.strftime('%H:%M UTC', time.gmtime(s['started_at']))}{ends}")
    headline = {
        "running": f"Training <b>{s['run']}</b> · {params_text(s['params'])} parameters · {s['device']}"
        if s["params"] else f"Preparing <b>{s['run']}</b>…",
        "stopping": f"Stopping <b>{s['run']}</b> after this step…",
        "finished": f"Finished <b>{s['run']}</b>: its best weights are in weights/{s['run']} and in the Generate tab.",
        "stopped": f"Stopped <b>{s['run']}</b>: its best weights are in weights/{s['run']} and in the Generate tab.",
        "failed": f"<b>{s['run']}</b> failed: {html.escape(s['error'])}",
    }[s["state"]]
    c = s["config"]
    settings = (f"{c['n_layer']} layers · {c['n_head']} heads · {c['n_embd']} wide · block {c['block_size']} · "
                f"batch {c['batch_size']} · dropout {c['dropout']} · "
                f"{'Tiny Shakespeare' if c['data'] == SHAKESPEARE else 'your text'}")
    return (f"<div class='status'><div>{headline}</div><div class='settings'>{settings}</div>"
            f"<progress value='{done:.4f}' max='1'></progress> <b>{done:.0%}</b>"
            f"<div>{' · '.join(figures)}</div></div>")


def loss_frame(s: dict) -> pd.DataFrame:
    rows = [(step, loss, "train (each batch)") for step, loss in s["steps"]]
    rows += [(e["step"], e["train_loss"], "train") for e in s["evals"]]
    rows += [(e["step"], e["val_loss"], "val") for e in s["evals"]]
    if not rows:  # nothing measured yet: the frame a run fills, from a model that knows nothing down to the lecture's
        rows = [(0, UNTRAINED, "train")]  # one point draws no line; without it the axes shrink to one value
    rows += [(0, LECTURE_VAL, LECTURE_LINE), (max(FIRST_STEPS, s["step"]), LECTURE_VAL, LECTURE_LINE)]
    return chart_frame(rows, SERIES, ["step", "loss", "series"])


def samples_markdown(s: dict) -> str:
    if not s["evals"]:
        return "*Samples appear here at every evaluation: noise first, then something like Shakespeare.*"
    shown = s["evals"][-6:] if len(s["evals"]) <= 7 else [s["evals"][0]] + s["evals"][-6:]  # the first for contrast
    return "### Samples, newest first\n" + "\n\n".join(
        f"**step {e['step']:,}** · val {e['val_loss']:.3f}\n```text\n{e['sample'].strip()}\n```"
        for e in reversed(shown))


def poll(profile: gr.OAuthProfile | None, request: gr.Request):
    s = runner.status()
    running = s["state"] in ("running", "stopping")
    may_stop = s["state"] == "running" and access.may_stop(profile, request, s["started_by"])
    return (progress_html(s), loss_frame(s), samples_markdown(s),
            gr.Button(interactive=not running and access.may_train(profile) is None), gr.Button(interactive=may_stop),
            running)


_app: dict = {}  # the Blocks this tab is built into: its record of uploads tells them from the server's own files


def build(demo: gr.Blocks) -> None:
    """The Train tab's components and events (call inside `with gr.Tab(...)`)."""
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            preset = gr.Dropdown(list(PRESETS), value="cpu", label="Preset",
                                 info="cpu: a few minutes on 2 cores (the estimate below is timed here) · "
                                      "lecture: the lecture's final model (GPU) · tiny: seconds")
            defaults = TrainConfig.from_preset("cpu")
            with gr.Row():
                n_layer = gr.Number(defaults.n_layer, label="Layers", precision=0, minimum=1, maximum=48)
                n_head = gr.Number(defaults.n_head, label="Heads", precision=0, minimum=1, maximum=64)
                n_embd = gr.Number(defaults.n_embd, label="n_embd (width)", precision=0, minimum=1, maximum=4096)
            with gr.Row():
                block_size = gr.Number(defaults.block_size, label="Block size (context)", precision=0,
                                       minimum=1, maximum=4096)
                batch_size = gr.Number(defaults.batch_size, label="Batch size", precision=0, minimum=1,
                                       maximum=4096)
                dropout = gr.Number(defaults.dropout, label="Dropout", minimum=0, maximum=0.95, step=0.05)
            with gr.Row():
                learning_rate = gr.Number(defaults.learning_rate, label="Learning rate", minimum=0, step=1e-4)
                max_iters = gr.Number(defaults.max_iters, label="Iterations", precision=0, minimum=0,
                                      maximum=1_000_000)
                eval_interval = gr.Number(defaults.eval_interval, label="Eval every", precision=0, minimum=1)
            minutes = gr.Number(0, label="Train for (minutes)", minimum=0, maximum=MAX_MINUTES, step=0.5,
                                elem_id="train-minutes",
                                info="0: run the iterations. Otherwise stop at this time instead, with the learning "
                                     "rate decayed over the time, so the model is at its best when time is up")
            seed = gr.Number(defaults.seed, label="Seed", precision=0)
            text_source = gr.Radio(["Tiny Shakespeare", "My own text"], value="Tiny Shakespeare",
                                   label="Training text")
            text_file = gr.File(label=f"Your text: a UTF-8 .txt file, up to {MAX_UPLOAD_MB} MB",
                                file_types=[".txt"], type="filepath", visible=False)
            init_from = gr.Dropdown([("from scratch", "")] + weights_choices(live=False), value="",
                                    label="Start from weights", allow_custom_value=True,  # start_training checks
                                    info="fine-tune saved or pulled weights: their model shape and characters")
            run_name = gr.Textbox(label="Run name", placeholder="empty: <preset>-<date>-<time>",
                                  info="the weights are saved in weights/<run name>")
            gr.Markdown(f"Runs on: **{DEVICE}**")
            time_estimate = gr.Markdown("*Estimating the time of these settings…*", elem_id="time-estimate")
            with gr.Row():
                start_btn = gr.Button("Start", variant="primary")
                stop_btn = gr.Button("Stop", variant="stop", interactive=False)
            message = gr.Markdown()
        with gr.Column(scale=2):
            progress = gr.HTML()
            chart = gr.LinePlot(x="step", y="loss", color="series", title="Loss (lower is better)",
                                elem_id="loss-chart", y_title="cross-entropy loss", height=320, color_map=SERIES)
            samples = gr.Markdown(max_height=520)

    settings = [n_layer, n_head, n_embd, block_size, batch_size, learning_rate, max_iters, dropout, eval_interval,
                seed]
    preset.change(preset_values, preset, settings, api_visibility="private")
    running = gr.State(False)  # whether a run goes, as this tab last saw it: its end brings the estimate back
    gr.on([demo.load, running.change, *(s.change for s in [*settings, minutes])], estimate,
          [preset, *settings, minutes], time_estimate,
          trigger_mode="always_last", concurrency_limit=1, concurrency_id="estimate", api_visibility="private",
          show_progress="minimal")
    text_source.change(lambda s: gr.File(visible=s == "My own text"), text_source, text_file,
                       api_visibility="private")
    init_from.focus(lambda: gr.Dropdown(choices=[("from scratch", "")] + weights_choices(live=False)), None,
                    init_from, api_visibility="private", show_progress="hidden")
    _app["demo"] = demo  # (not a functools.partial: Gradio reads the handler's type hints to pass the visitor)
    start_btn.click(start_training,
                    [preset, *settings, text_source, text_file, run_name, minutes, init_from], message,
                    api_name="start_training", concurrency_limit=None)
    stop_btn.click(stop_training, None, message, api_name="stop_training", concurrency_limit=None)
    gr.api(training_status, api_name="training_status", concurrency_limit=None)
    timer = gr.Timer(1.0)  # every tab polls the one server-owned run
    gr.on([timer.tick, demo.load], poll, None, [progress, chart, samples, start_btn, stop_btn, running],
          api_visibility="private", concurrency_limit=None, show_progress="hidden")
