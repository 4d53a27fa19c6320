"""The Train tab: pick a preset, press Start, and watch the server's one run from every open tab, or train in
this browser ("Train on"): webapp/train_browser.js runs the same model in a Web Worker on the visitor's device and
draws the same view; no request that trains reaches the server. A visitor who may not train on the server (a public
app, webapp/access.py) trains in the browser by default.

The top of the tab is the whole first step (a preset, how long, Start); every other setting waits in a fold. When
no run is live the chart is not left empty: it shows the last run on disk, or (a fresh server, a public page)
the shipped weights' own training replayed from their log, noise to Shakespeare.
"""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import gradio as gr
import pandas as pd

from gpt.training import budget
from gpt.training import log as runlog
from gpt.sharing.card import COLORS, params_text
from gpt.config import GPTConfig
from gpt.data import SHAKESPEARE
from gpt.errors import GPTError
from gpt.training.estimate import estimate_time
from gpt.training.optim import OPTIMIZERS
from gpt.training.presets import ABOUT, BROWSER_PRESETS, LECTURE_VAL, PRESETS
from gpt.sharing.weights import new_run_name
from gpt.training.trainer import TrainConfig
from webapp import access, live, share
from webapp.state import (DEVICE, MAX_UPLOAD_MB, PRESET, WEIGHTS, chart_frame, duration, refused, runner,
                          stop_training, weights_choices, weights_folder)
from webapp.uploads import uploaded_file

FIELDS = ["n_layer", "n_head", "n_embd", "block_size", "batch_size", "learning_rate", "max_iters", "dropout",
          "eval_interval", "seed"]
OPTIMIZER_FIELDS = ["optimizer", "muon_lr"]  # after the original fields in the API, so old scripts keep working
# start_training's parameters and the Start button's inputs, in this one order: the API's (a test holds the three)
INPUTS = ["preset", *FIELDS, "text_source", "text_file", "run_name", "minutes", "init_from", *OPTIMIZER_FIELDS]
LECTURE_LINE = f"lecture: {LECTURE_VAL}"
SERIES = {"train (each batch)": COLORS["train (each batch)"], "train": COLORS["train"], "val": COLORS["val"],
          LECTURE_LINE: COLORS["lecture"]}
MAX_MINUTES = 24 * 60
UNTRAINED = math.log(GPTConfig.vocab_size)  # the loss of a model that knows nothing of Tiny Shakespeare's characters
FIRST_STEPS = 100  # the chart's steps before a run has made more: whole-step ticks, not 0.05 of a step
REPLAY_S = 45.0  # the shipped weights' training, replayed in 45 s from when the page opens, then held
CHART_S = 5.0  # a live run: chart and samples every 5 s (more for a crowd) and at each evaluation; progress each second
SCROLL_TO_RUN = """(...args) => {
  document.querySelector('#train-progress')?.scrollIntoView({behavior: 'smooth', block: 'start'});
  return args;
}"""  # after Start, the run (progress, chart, newest sample) is what the learner looks at
TRAIN_ON = ["this browser", "the server"]
# "Train on" shows one of two sets of buttons (and, once this browser has a run, of views: until then the server's,
# a replay of the shipped weights' training for a stranger); CSS, so that the view the page draws stays put
CSS = """
body:not(.train-in-browser) .in-browser, body.train-in-browser .on-server { display: none !important; }
body.train-in-browser.browser-has-run .server-view { display: none !important; }
body:not(.browser-has-run) #browser-run { display: none !important; }
body:not(.browser-has-zip) #browser-push { display: none !important; }
body:not(.own-text) #browser-text { display: none !important; }
.browser-chart svg { width: 100%; height: auto; font-size: 11px; fill: #6b7280; }
.browser-legend span { margin-left: 10px; font-size: 0.85em; } .browser-legend i { display: inline-block; width: 12px;
  height: 3px; margin-right: 4px; vertical-align: middle; }
.browser-view pre { white-space: pre-wrap; font-size: 0.85em; } .browser-view h4 { margin: 10px 0 4px; }
#browser-download { margin-top: 6px; padding: 4px 12px; } .browser-error { color: #b91c1c; }
.browser-status progress { width: 80%; height: 14px; vertical-align: middle; } .browser-status div { margin: 4px 0; }
.browser-status .settings { color: #6b7280; font-size: 0.9em; }  /* app.py's .status: a class of its own, one .status a page */
"""
# Start, training in the browser: the preset's TrainConfig, the form's settings, the minutes; the text is read in the
# page (train_browser.js). No fn: nothing of it goes to the server
BROWSER_START_JS = """(preset, minutes, textSource, ...values) => {
  const PRESETS = BROWSER_PRESETS_JSON, FIELDS = FIELDS_JSON;
  // a server preset still in the form (the page has just opened, its switch to the browser's presets in flight):
  // the browser preset as it is, not that preset's sizes
  const fits = preset in PRESETS, config = { ...(fits ? PRESETS[preset] : PRESETS.browser) };
  if (fits) FIELDS.forEach((f, i) => { if (![null, undefined, ''].includes(values[i])) config[f] = values[i]; });
  config.max_time = 60 * (Number(minutes) || 0);
  if (config.max_time) config.max_iters = 0;  // "Train for" some minutes: the clock ends the run
  const file = document.querySelector('#browser-text input[type=file]')?.files?.[0];
  window.gptTrain.start(config, textSource === 'My own text', file);
  document.querySelector('#browser-run')?.scrollIntoView({behavior: 'smooth', block: 'start'});  // as SCROLL_TO_RUN
  return [];
}"""
# A preset's settings into the form, in the page: a round trip to the server would leave a moment in which the menu
# names one preset and the form holds another's sizes, and a Start pressed then would train the wrong model
PRESET_JS = """(preset, ...values) => (PRESET_VALUES_JSON)[preset] || values"""
# Push (a run kept in this browser): the page uploads its files and hands their addresses to the files input
PUSH_JS = """async (files, repo, ...rest) => {
  try { return [await window.gptTrain.upload(), repo, ...rest]; }
  catch (e) { return [[], repo, ...rest]; }  // the server then says what to do
}"""
# the page's side of "Train on" and "Training text": a class on <body> (CSS above), then the value to the server
SHOW_JS = """(value) => { document.body.classList.toggle('CLASS', value === 'WHEN'); return value; }"""


def preset_values(preset: str) -> list:
    config = TrainConfig.from_preset(preset)
    return [getattr(config, f) for f in FIELDS + OPTIMIZER_FIELDS]


def start_training(preset, n_layer, n_head, n_embd, block_size, batch_size, learning_rate, max_iters, dropout,
                   eval_interval, seed, text_source, text_file, run_name, minutes=0, init_from="", optimizer="",
                   muon_lr=None, profile: gr.OAuthProfile | None = None, request: gr.Request = None):
    """Start a training run in the server's background thread; every viewer sees it. Returns a message.

    minutes above 0 trains for that long instead of max_iters, ending annealed at the deadline.
    init_from: saved weights to start from (fine-tune; their model shape is used), or empty for from scratch.
    optimizer ("adamw" or "muon") and muon_lr: empty for the preset's. eval_interval 0: about 15 evaluations."""
    given = dict(locals())  # the inputs, by name (INPUTS)
    access.require_training(profile)
    values = {f: given[f] for f in FIELDS}
    values.update({f: given[f] for f in OPTIMIZER_FIELDS if given[f] not in (None, "")})
    try:
        values["max_time"] = time_limit(minutes)
        if values["max_time"]:
            values["max_iters"] = 0  # "Train for" some minutes: the clock ends the run, not the steps
        if text_source == "My own text":
            if not text_file:
                raise GPTError("upload a .txt file first, or choose Tiny Shakespeare")
            values["data"] = str(uploaded_file(text_file, request))  # never a file the server merely has
        else:
            values["data"] = SHAKESPEARE
        if init_from:
            values["init_from"] = str(weights_folder(init_from))
        config = TrainConfig.from_preset(preset, **values)
        name = run_name or new_run_name(preset)
        if not runner.running:  # a busy runner refuses below, before anything is removed
            access.make_room(WEIGHTS, keep=name)
        out = runner.start(config, name, Path(values["data"]).name, started_by=access.starter(profile, request),
                           limits=access.limits(profile))
    except GPTError as e:
        raise refused(e)
    started = f" from the weights of **{init_from}** (their shape: the layers, heads, width and block)" \
        if init_from else ""
    return f"Started **{out.name}**{started} on {DEVICE}. Every open tab shows this run."


def estimate(preset, *settings_and_minutes) -> str:
    """The chosen settings' training time on this device (or, training for some minutes, about how many steps),
    from timed steps of their size (remembered per size)."""
    if runner.running:
        return "*The time estimate waits for the current run to end: measuring now would slow it down.*"
    *settings, minutes = settings_and_minutes
    try:
        chosen = dict(zip(FIELDS + OPTIMIZER_FIELDS, settings))
        chosen = {k: v for k, v in chosen.items() if k in FIELDS or v not in (None, "")}
        config = TrainConfig.from_preset(preset, **chosen, max_time=time_limit(minutes))
        guess = estimate_time(config)
    except (GPTError, ValueError, TypeError) as e:
        return f"*No estimate: {e}*"
    except RuntimeError as e:  # e.g. out of memory on the device: the run itself would fail the same way
        return f"*No estimate: these settings do not fit on {DEVICE} ({str(e).splitlines()[0]})*"
    about = "roughly" if guess.rough else "about"
    measured = f"{guess.step_seconds * 1000:,.0f} ms a step, measured; {duration(guess.eval_seconds)} an evaluation"
    if guess.rough:
        measured += "; the machine was busy while timing, so this is rough"
    if config.max_time:
        return f"Trains for {duration(config.max_time)} on {DEVICE}: **{about} {guess.steps:,} steps** ({measured})"
    took = duration(guess.seconds)
    return f"{config.max_iters:,} steps on {DEVICE}: **{took if took == 'under 1 s' else f'{about} {took}'}** ({measured})"


def time_limit(minutes) -> float:
    """Seconds from the "Train for" minutes (0 or empty: run the iterations), or a GPTError a person can act on."""
    return budget.seconds(minutes, unit=60, most=MAX_MINUTES, what="Train for")


def training_status() -> dict:
    """The run's state, step, losses, tokens/s, ETA and samples, as JSON."""
    status = runner.status()
    status["steps"] = [list(s) for s in status["steps"]]
    status["started_by"] = access.shown_name(status["started_by"]) or None  # never an anonymous starter's session
    return status


# --- what the chart shows when no run is live: the last run on disk, or the shipped weights' training replayed ---

_logs: dict[tuple, runlog.RunRecord] = {}  # (folder, log's mtime) -> its record: a log is read once, not at every poll


def logged(folder: Path, name: str) -> runlog.RunRecord | None:
    """A past run, from its log (state finished, stopped or interrupted); None without an evaluation to show."""
    try:
        key = (str(folder), runlog.changed_ns(folder))
    except OSError:
        return None
    if key not in _logs:
        _logs.clear()  # one log is shown at a time (the last run, or the shipped one): keep only the newest read
        _logs[key] = runlog.read(folder, name)
    run = _logs[key]
    return run if run and run.evals else None


def logged_status(folder: Path, name: str) -> dict | None:
    """A past run, from its log, as a viewer polls it."""
    run = logged(folder, name)
    return run.status() if run else None


def replay(run: runlog.RunRecord, seconds: float) -> dict:
    """The run as far as it had got `seconds` into its replay (which plays once, then holds the end)."""
    return run.until(round(run.step * min(1.0, max(0.0, seconds) / REPLAY_S))).status()


def last_run() -> dict | None:
    """The newest run in weights/ that is not the shipped default, from its log."""
    try:
        folders = [p for p in WEIGHTS.iterdir() if p.name != "default" and runlog.exists(p)]
    except OSError:
        return None
    newest = max(folders, key=runlog.changed_ns, default=None)
    return logged_status(newest, newest.name) if newest else None


def shown_status(replay_seconds: float = REPLAY_S) -> dict:
    """What the Train tab shows: the live (or just ended) run; else the last run on disk (not on a public page,
    where it would be a stranger's); else the shipped weights' training, replayed (this far into the replay)."""
    s = runner.status()
    if s["state"] != "idle" or s["interrupted"]:
        return s
    past = None if access.current().public else last_run()
    if past is not None:
        return past
    shipped = logged(WEIGHTS / "default", "default")
    return replay(shipped, replay_seconds) if shipped and len(shipped.evals) > 1 else s


def interrupted_html(run: dict) -> str:
    """The run the server was training when it stopped (a restart, a crash): where it got to, how to go on."""
    name = html.escape(run["run"])
    best = f" (best val loss {run['best_val']:.3f})" if isinstance(run.get("best_val"), (int, float)) else ""
    return (f"<div class='status'><div>The run <b>{name}</b> was interrupted at step {run['step']:,} of "
            f"{run['max_iters']:,} when the server stopped. Its best weights so far{best} are in weights/{name} and "
            f"in the Generate tab.</div><div class='settings'>To carry it on: the Runs tab's <b>Carry on</b>, or "
            f"<code>python -m train --out weights/{name} --resume</code>. Or start a new run.</div></div>")


def both_sides(in_browser: str, on_server: str) -> str:
    """Words for each side of "Train on": the page shows the chosen side's (CSS above), at once when it changes."""
    return f"<span class='in-browser'>{in_browser}</span><span class='on-server'>{on_server}</span>"


def replay_html(s: dict, may_train: bool) -> str:
    done = s["step"] / s["max_iters"] if s["max_iters"] else 1.0
    figures = [f"step <b>{s['step']:,}</b> / {s['max_iters']:,}"]
    if s["loss"] is not None:
        figures.append(f"loss {s['loss']:.3f}")
    if len(s["evals"]) > 1:
        figures.append(f"best val <b>{s['best_val']:.3f}</b>")
    figures.append(f"{duration(s['elapsed'])} of training on {html.escape(s['device'] or 'a CPU')}")
    what = both_sides("Write with these weights in the <b>Generate</b> tab now, or press <b>Start</b> to train your own "
                      "in this browser and watch it learn the same way.",
                      "Press <b>Start</b> to train your own and watch it learn the same way." if may_train else
                      "Write with these weights in the <b>Generate</b> tab now; to train your own, run the app on your "
                      "machine: <code>python app.py</code>.")
    return (f"<div class='status'><div>▶ <b>Replay</b> of how the shipped weights learned "
            f"({params_text(s['params'])} parameters), from their real log. {what}</div>"
            f"<progress value='{done:.4f}' max='1'></progress> <b>{done:.0%}</b>"
            f"<div>{' · '.join(figures)}</div></div>")


def progress_html(s: dict, may_train: bool = True) -> str:
    if s["state"] == "replay":
        return replay_html(s, may_train)
    if s["state"] == "idle" and s.get("interrupted"):
        return interrupted_html(s["interrupted"])
    if s["state"] == "idle":
        start = "No run yet. Pick a preset and press <b>Start</b>."
        return "<div class='status'>" + both_sides(start, start if may_train else "No run is going. Write with the "
                                                   "shipped weights in the <b>Generate</b> tab.") + "</div>"
    if s.get("max_time"):  # a timed run: the bar is the clock
        done = 1.0 if s["state"] != "running" else min(1.0, s["elapsed"] / s["max_time"])
        figures = [f"step <b>{s['step']:,}</b> · training for {duration(s['max_time'])}"]
    else:
        done = s["step"] / s["max_iters"] if s["max_iters"] else 1.0
        figures = [f"step <b>{s['step']:,}</b> / {s['max_iters']:,}"]
    if s["loss"] is not None:
        figures.append(f"loss <b>{s['loss']:.3f}</b>")
    if len(s["evals"]) > 1:  # the first evaluation is the untrained model's: no "best" worth showing yet
        figures.append(f"best val {s['best_val']:.3f}")
    if s["tokens_per_sec"]:
        figures.append(f"{s['tokens_per_sec']:,.0f} tokens/s")
    if s["lr"]:
        figures.append(f"lr {s['lr']:.2e}")
    figures.append(f"elapsed {duration(s['elapsed'])}")
    if s["eta"] is not None:
        figures.append(f"ETA {duration(s['eta'])}")
    if s["started_by"] and s["state"] in ("running", "stopping"):  # public: who, and when it ends at the latest
        ends = f" · stops by {time.strftime('%H:%M UTC', time.gmtime(s['deadline']))}" if s["deadline"] else ""
        figures.append(f"started by {access.shown_name(s['started_by'])} at "
                       f"{time.strftime('%H:%M UTC', time.gmtime(s['started_at']))}{ends}")
    run = html.escape(s["run"] or "")
    kept = f"its best weights are in weights/{run} and in the Generate tab."
    headline = {
        "running": f"Training <b>{run}</b> · {params_text(s['params'])} parameters · {s['device']}"
        if s["params"] else f"Preparing <b>{run}</b>…",
        "stopping": f"Stopping <b>{run}</b> after this step…",
        "finished": f"Finished <b>{run}</b>: {kept}",
        "stopped": f"Stopped <b>{run}</b>: {kept}",
        "interrupted": f"The last run, <b>{run}</b>, was cut off at step {s['step']:,}: {kept} Carry it on in the "
                       f"Runs tab.",
        "failed": f"<b>{run}</b> failed: {html.escape(s['error'])}",
    }[s["state"]]
    c = s["config"]
    optimizer = "Muon + AdamW" if c.get("optimizer") == "muon" else "AdamW"
    settings = (f"{c['n_layer']} layers · {c['n_head']} heads · {c['n_embd']} wide · block {c['block_size']} · "
                f"batch {c['batch_size']} · dropout {c['dropout']} · {optimizer} · "
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
    end = s["max_iters"] if s.get("state") == "replay" else s["step"]  # a replay's axes stay put as it plays
    rows += [(0, LECTURE_VAL, LECTURE_LINE), (max(FIRST_STEPS, end), LECTURE_VAL, LECTURE_LINE)]
    return chart_frame(rows, SERIES, ["step", "loss", "series"])


def samples_markdown(s: dict) -> str:
    if not s["evals"]:
        return "*Samples appear here at every evaluation: noise first, then something like Shakespeare.*"
    shown = s["evals"][-6:] if len(s["evals"]) <= 7 else [s["evals"][0]] + s["evals"][-6:]  # the first for contrast
    return "### Samples, newest first\n" + "\n\n".join(
        f"**step {e['step']:,}** · val {e['val_loss']:.3f}\n```text\n{e['sample'].strip()}\n```"
        for e in reversed(shown))


def poll(was_running: bool, replay_began: float | None, profile: gr.OAuthProfile | None, request: gr.Request):
    """The tab's view, and whether to poll again in a second: only while something moves (a live run, the replay
    this page is playing); else the page waits for webapp/live.py to say that something changed."""
    now = time.time()
    # the page holds when its replay began (a hidden field, not a gr.State: see below); a stranger's page may send
    # anything there, and anything but a past time starts the replay now
    began = replay_began if isinstance(replay_began, (int, float)) and math.isfinite(replay_began) and \
        replay_began <= now else now
    s = shown_status(now - began)
    running = s["state"] in ("running", "stopping")
    replaying = s["state"] == "replay"
    may_train = access.may_train(profile) is None
    may_stop = s["state"] == "running" and access.may_stop(profile, request, s["started_by"])
    # "Started …" and "Stopping …" describe a run: they go when it ends, the progress line says how it ended
    message = "" if was_running and not running else gr.skip()
    progress = progress_html(s, may_train)
    moving = running or (replaying and now - began < REPLAY_S)
    return (progress, loss_frame(s), samples_markdown(s), gr.Button(interactive=not running and may_train),
            gr.Button(interactive=may_stop), running, message, began if replaying else None,
            gr.Timer(live.every(CHART_S) if running else 1.0, active=moving))


def live_progress() -> str | None:
    """A live run's progress line, the same for every viewer: webapp/live.py sends it to all once a second."""
    s = runner.status()
    return progress_html(s) if s["state"] in ("running", "stopping") else None


def browser_presets() -> dict:
    """Each browser preset's TrainConfig as the worker takes it (docs/browser-training.md)."""
    return {name: asdict(TrainConfig.from_preset(name)) for name in BROWSER_PRESETS}


def preset_hint(names) -> str:
    """The preset menu's words: each preset it offers and what it is for."""
    return " · ".join(f"{name}: {ABOUT.get(name, '')}" for name in sorted(names))


def preset_choices(train_on: str):
    """Training in the browser offers the presets that fit it; the server offers all."""
    choices = BROWSER_PRESETS if train_on == TRAIN_ON[0] else list(PRESETS)
    return gr.Dropdown(choices=choices, value=choices[0] if train_on == TRAIN_ON[0] else PRESET,
                       info=preset_hint(choices))


def build(demo: gr.Blocks, tabs: gr.Tabs) -> None:
    """The Train tab's components and events (call inside `with gr.Tab(...)`); tabs: to send a visitor who may
    not train to the Generate tab."""
    defaults = TrainConfig.from_preset(PRESET)
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            train_on = gr.Radio(TRAIN_ON, value=TRAIN_ON[1], label="Train on", elem_id="train-on",
                                info="this browser: on your device, in a Web Worker; the server trains one run for all")
            with gr.Row():
                preset = gr.Dropdown(list(PRESETS), value=PRESET, label="Preset", info=preset_hint(PRESETS),
                                     min_width=150)
                minutes = gr.Number(0, label="Train for (minutes)", minimum=0, maximum=MAX_MINUTES, step=0.5,
                                    elem_id="train-minutes", min_width=150,
                                    info="0: the preset's iterations. Else stop then, annealed")
            with gr.Row():
                start_btn = gr.Button("Start", variant="primary", elem_id="start-training",
                                      elem_classes=["on-server"])
                stop_btn = gr.Button("Stop", variant="stop", interactive=False, elem_id="stop-training",
                                     elem_classes=["on-server"])
                browser_start = gr.Button("Start", variant="primary", elem_id="browser-start",
                                          elem_classes=["in-browser"])
                browser_stop = gr.Button("Stop", variant="stop", interactive=False, elem_id="browser-stop",
                                         elem_classes=["in-browser"])
            time_estimate = gr.Markdown("*Timing these settings on this machine…*", elem_id="time-estimate",
                                        elem_classes=["on-server"])
            message = gr.Markdown(elem_id="train-message")
            with gr.Accordion("Advanced settings", open=False, elem_id="train-advanced"):
                with gr.Row():
                    n_layer = gr.Number(defaults.n_layer, label="Layers", precision=0, minimum=1, maximum=48)
                    n_head = gr.Number(defaults.n_head, label="Heads", precision=0, minimum=1, maximum=64)
                    n_embd = gr.Number(defaults.n_embd, label="n_embd (width)", precision=0, minimum=1,
                                       maximum=4096)
                with gr.Row():
                    block_size = gr.Number(defaults.block_size, label="Block size (context)", precision=0,
                                           minimum=1, maximum=4096)
                    batch_size = gr.Number(defaults.batch_size, label="Batch size", precision=0, minimum=1,
                                           maximum=4096)
                    dropout = gr.Number(defaults.dropout, label="Dropout", minimum=0, maximum=0.95, step=0.05)
                with gr.Row():
                    optimizer = gr.Dropdown(list(OPTIMIZERS), value=defaults.optimizer, label="Optimizer",
                                            info="muon: Muon for the Blocks' matrices, AdamW for the rest; "
                                                 "auto: muon where bf16 is native, else adamw")
                    muon_lr = gr.Number(defaults.muon_lr, label="Muon learning rate", minimum=0, step=1e-3,
                                        visible=defaults.optimizer != "adamw")
                with gr.Row():
                    learning_rate = gr.Number(defaults.learning_rate, label="Learning rate", minimum=0, step=1e-4)
                    max_iters = gr.Number(defaults.max_iters, label="Iterations", precision=0, minimum=0,
                                          maximum=1_000_000)
                    eval_interval = gr.Number(defaults.eval_interval, label="Eval every", precision=0, minimum=0,
                                              info="steps; 0: about 15 evaluations a run")
                seed = gr.Number(defaults.seed, label="Seed", precision=0)
                text_source = gr.Radio(["Tiny Shakespeare", "My own text"], value="Tiny Shakespeare",
                                       label="Training text")
                text_file = gr.File(label=f"Your text: a UTF-8 .txt file, up to {MAX_UPLOAD_MB} MB",
                                    file_types=[".txt"], type="filepath", visible=False, elem_classes=["on-server"])
                gr.HTML("<label>Your text: a UTF-8 .txt file, read in this page and never uploaded "
                        "<input type='file' accept='.txt,text/plain'></label>", elem_id="browser-text",
                        elem_classes=["in-browser"])
                init_from = gr.Dropdown([("from scratch", "")] + weights_choices(live=False), value="",
                                        label="Start from weights", allow_custom_value=True,  # start_training checks
                                        info="fine-tune saved or pulled weights: their model shape and characters")
                run_name = gr.Textbox(label="Run name", placeholder="empty: <preset>-<date>-<time>",
                                      info="the weights are saved in weights/<run name>")
            gr.Markdown(f"Runs on: **{DEVICE}**", elem_classes=["on-server"])
            gr.Markdown("Trains on: **this browser**: WebGPU where it has a GPU, else WebAssembly, else (slowly) "
                        "plain JavaScript (the run says which, and how fast; "
                        "[how fast is this browser?](/browser/train-speed))",
                        elem_classes=["in-browser"])
        with gr.Column(scale=2):
            progress = gr.HTML(elem_id="train-progress", elem_classes=["server-view"])
            to_generate = gr.Button("Write with the shipped weights →", visible=False, size="sm",
                                    elem_classes=["server-view"])
            chart = gr.LinePlot(x="step", y="loss", color="series", title="Loss (lower is better)",
                                elem_id="loss-chart", y_title="cross-entropy loss", height=300, color_map=SERIES,
                                tooltip=["series", "step", "loss"], elem_classes=["server-view"])
            samples = gr.Markdown(max_height=520, elem_id="train-samples", elem_classes=["server-view"])
            gr.HTML(elem_id="browser-run", elem_classes=["in-browser"])  # drawn by train_browser.js
            # a signed-in visitor (or a laptop) pushes the run kept in this browser: the page uploads its files, the
            # server checks them and pushes (webapp/share.py); shown once this browser keeps a run (CSS)
            with gr.Column(elem_id="browser-push", elem_classes=["in-browser"], visible=False) as push_row:
                with gr.Row(equal_height=True):
                    push_repo = gr.Textbox(label="Push this run to the Hub: model repo",
                                           placeholder="you/my-browser-gpt", scale=3)
                    push_private = gr.Checkbox(False, label="Private", scale=1)
                push_btn = gr.Button("Push to the Hub", variant="primary")  # as the Share tab's
            push_files = gr.File(file_count="multiple", type="filepath", elem_classes=["gpt-hidden"])  # PUSH_JS fills
            push_result = gr.Markdown(elem_id="browser-push-result", elem_classes=["in-browser"])

    components = {name: c for name, c in locals().items() if name in INPUTS}  # each input by its name
    settings = [components[f] for f in FIELDS]
    preset.change(None, [preset, *settings, optimizer, muon_lr], [*settings, optimizer, muon_lr],
                  js=PRESET_JS.replace("PRESET_VALUES_JSON", json.dumps({p: preset_values(p) for p in PRESETS})))
    optimizer.change(lambda o: gr.Number(visible=o != "adamw"), optimizer, muon_lr, api_visibility="private")
    # What a tab remembers between polls is held in the page (hidden fields), never in a gr.State: one State in the
    # app makes Gradio keep a heartbeat stream open in every tab, and over HTTP/1.1 a browser has six connections to
    # a server (python app.py's fourth or fifth tab never finished loading).
    running = gr.Checkbox(False, visible=False)  # a run goes, as this tab last saw: its end brings the estimate back
    gr.on([demo.load, running.change, *(s.change for s in [*settings, optimizer, muon_lr, minutes])], estimate,
          [preset, *settings, optimizer, muon_lr, minutes], time_estimate,
          trigger_mode="always_last", concurrency_limit=1, concurrency_id="estimate", api_visibility="private",
          show_progress="minimal")
    text_source.change(lambda s: gr.File(visible=s == "My own text"), text_source, text_file,
                       api_visibility="private", js=SHOW_JS.replace("CLASS", "own-text").replace("WHEN", "My own text"))
    train_on.change(preset_choices, train_on, preset, api_visibility="private",
                    js=SHOW_JS.replace("CLASS", "train-in-browser").replace("WHEN", TRAIN_ON[0]))
    browser_start.click(None, [preset, minutes, text_source, *settings], None,
                        js=BROWSER_START_JS.replace("BROWSER_PRESETS_JSON", json.dumps(browser_presets()))
                        .replace("FIELDS_JSON", json.dumps(FIELDS)))
    browser_stop.click(None, None, None, js="() => { window.gptTrain.stop(); return []; }")
    push_btn.click(share.push_browser_run, [push_files, push_repo, push_private], push_result,
                   api_name="push_browser_run", concurrency_limit=2, js=PUSH_JS)

    def push_shown(profile: gr.OAuthProfile | None):
        """Push is offered to whoever may push (signed in, in public), as in the Share tab."""
        return gr.Column(visible=access.may_push(profile))

    demo.load(push_shown, None, push_row, api_visibility="private", concurrency_limit=None, show_progress="hidden")
    init_from.focus(lambda: gr.Dropdown(choices=[("from scratch", "")] + weights_choices(live=False)), None,
                    init_from, api_visibility="private", show_progress="hidden")
    start_btn.click(start_training, [components[name] for name in INPUTS], message, api_name="start_training",
                    concurrency_limit=None, js=SCROLL_TO_RUN).then(None, js=live.REFRESH_JS)
    stop_btn.click(stop_training, None, message, api_name="stop_training",
                   concurrency_limit=None).then(None, js=live.REFRESH_JS)
    gr.api(training_status, api_name="training_status", concurrency_limit=None)

    def who_may_train(profile: gr.OAuthProfile | None):
        """A visitor who may not train on the server trains in this browser."""
        may = access.may_train(profile) is None
        return gr.Button(visible=not may), TRAIN_ON[1] if may else TRAIN_ON[0]

    demo.load(who_may_train, None, [to_generate, train_on], api_visibility="private", concurrency_limit=None,
              show_progress="hidden")
    to_generate.click(lambda: gr.Tabs(selected="generate"), None, tabs, api_visibility="private")
    timer = gr.Timer(1.0, active=False)  # on while something moves (poll says); else webapp/live.js wakes the tab
    refresh = gr.Button("refresh", elem_classes=["live-refresh", "gpt-hidden"])
    replay_began = gr.Number(None, visible=False)  # when this page's replay of the shipped weights' training began
    shown = [progress, chart, samples, start_btn, stop_btn, running, message, replay_began, timer]
    gr.on([timer.tick, demo.load], poll, [running, replay_began], shown, api_visibility="private",
          concurrency_limit=None, show_progress="hidden", trigger_mode="always_last")
    # a refresh of its own, every click sent: a tick caught in flight by a server's restart stays pending in the
    # page for good, and would hold back (always_last) the refresh that catches the page up once the server is back
    refresh.click(poll, [running, replay_began], shown, api_visibility="private", concurrency_limit=None,
                  show_progress="hidden", trigger_mode="multiple")
