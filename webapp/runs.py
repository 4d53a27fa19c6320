"""The Runs tab: every run in weights/ — compare their curves, samples and settings, carry one on, delete one."""

from __future__ import annotations

import html
import io
from pathlib import Path

import gradio as gr
import pandas as pd
from PIL import Image

from gpt.training import runs
from gpt.sharing.card import line_chart_png, params_text
from gpt.errors import GPTError
from gpt.training.presets import LECTURE_VAL
from webapp import access
from webapp.state import WEIGHTS, duration, refused, runner

MAX_COMPARED = 6  # the chart's legend holds six names
RUN_COLORS = ["#4f46e5", "#f97316", "#16a34a", "#dc2626", "#0ea5e9", "#a855f7"]
X_AXES = {"steps": 0, "wall-clock seconds": 1}  # the index in each curve point (step, elapsed, val)
COLUMNS = ["run", "state", "steps", "best val", "training time", "parameters", "device", "when (UTC)",
           "settings that differ from the preset"]


def all_runs(sort: str = "newest") -> list[dict]:
    """The runs under weights/, with the run this server is training marked as training."""
    listed = runs.list_runs(WEIGHTS, sort=sort)
    s = runner.status()
    live = s["out_dir"] and s["state"] in ("running", "stopping")
    for r in listed:
        if live and str(WEIGHTS / r["name"]) == s["out_dir"]:
            r["state"], r["resumable"] = "training", False
    return listed


def list_runs(sort: str = "newest") -> list:
    """Every run in weights/ (and the ladder's rungs): name, state, steps, best val, time, settings, val curve and
    latest sample, as JSON. sort: 'newest' or 'best val'."""
    try:
        return all_runs(sort)
    except GPTError as e:
        raise refused(e)


def resume_training(run_name: str, max_iters: float, profile: gr.OAuthProfile | None = None,
                    request: gr.Request = None) -> str:
    """Carry the stopped or interrupted run weights/<run_name> on up to max_iters steps, exactly as `--resume`."""
    access.require_training(profile)  # on a public app, the owner's policy decides who trains
    try:
        if isinstance(max_iters, float) and max_iters.is_integer():
            max_iters = int(max_iters)
        out = runner.resume(run_name, max_iters, started_by=access.starter(profile, request),
                            limits=access.limits(profile))
    except GPTError as e:
        raise refused(e)
    return f"Carrying **{out.name}** on to step {max_iters:,}: watch it in the Train tab."


def delete_run(run_name: str, profile: gr.OAuthProfile | None = None) -> str:
    """Delete weights/<run_name> (never the shipped default, never the run training now)."""
    access.require_owner(profile, "delete runs")
    try:
        s = runner.status()
        if s["state"] in ("running", "stopping") and s["out_dir"] == str(WEIGHTS / str(run_name).strip()):
            raise GPTError(f"{run_name} is training right now: stop it first")
        runs.delete_run(WEIGHTS, run_name)
    except GPTError as e:
        raise refused(e)
    return f"Deleted weights/{run_name}."


def runs_frame(listed: list[dict]) -> pd.DataFrame:
    rows = []
    for r in listed:
        differs = ", ".join(f"{k}={v}" for k, v in r["differs"].items())
        settings = (r["preset"] + (f" + {differs}" if differs else "")) if r["preset"] else ""
        rows.append((r["name"], r["state"], r["steps"], None if r["best_val"] is None else round(r["best_val"], 4),
                     duration(r["time"]), params_text(r["params"]) if r["params"] else "", r["device"],
                     r["when"], settings))
    return pd.DataFrame(rows, columns=COLUMNS)


def curves_image(chosen: list[dict], x_axis: str) -> Image.Image | None:
    """The chosen runs' validation curves on one chart, against steps or seconds of training."""
    if not chosen:
        return None
    i = X_AXES.get(x_axis, 0)
    series = [(r["name"], RUN_COLORS[n], [(point[i], point[2]) for point in r["curve"]])
              for n, r in enumerate(chosen)]
    png = line_chart_png(series, x_label=x_axis, title="validation loss (lower is better)",
                         levels=[(LECTURE_VAL, f"lecture: {LECTURE_VAL}")], size=(1000, 420))
    return Image.open(io.BytesIO(png))


def samples_html(chosen: list[dict]) -> str:
    """The latest sample of each chosen run, side by side."""
    cells = []
    for r in chosen:
        step = f"step {r['curve'][-1][0]:,} · val {r['curve'][-1][2]:.3f}" if r["curve"] else "no evaluation yet"
        cells.append(f"<div class='run-sample'><b>{html.escape(r['name'])}</b> <small>{step}</small>"
                     f"<pre>{html.escape(r['sample'].strip()) or '(no sample)'}</pre></div>")
    return f"<div class='run-samples'>{''.join(cells)}</div>" if cells else ""


def settings_frame(chosen: list[dict]) -> pd.DataFrame:
    differs = runs.differing_settings(chosen) if len(chosen) > 1 else {}
    # no long paths; "–" for a setting a run's log does not record (an older run)
    shown = lambda k, v: (Path(v).name if k in ("data", "init_from") and v  # noqa: E731
                          else "–" if v is None else str(v))
    return pd.DataFrame([[k, *(shown(k, v) for v in values)] for k, values in differs.items()],
                        columns=["setting", *[r["name"] for r in chosen]])


def compare(picked, x_axis, sort="newest"):
    by_name = {r["name"]: r for r in all_runs(sort)}
    chosen = [by_name[name] for name in picked or [] if name in by_name]
    note = f"Showing the first {MAX_COMPARED} runs ticked." if len(chosen) > MAX_COMPARED else ""
    chosen = chosen[:MAX_COMPARED]
    # the chart and the table of differences show once there is something in them, not as empty boxes
    return (gr.Image(curves_image(chosen, x_axis), visible=bool(chosen)), samples_html(chosen),
            gr.Dataframe(settings_frame(chosen), visible=len(chosen) > 1), note)


def refresh(sort, picked, resume_choice, delete_choice):
    listed = all_runs(sort)
    names = [r["name"] for r in listed]
    resumable = [r["name"] for r in listed if r["resumable"]]
    deletable = [r["name"] for r in listed if r["group"] == "runs" and r["name"] != "default"]
    keep = lambda value, choices: value if value in choices else None  # noqa: E731
    # the ticks are sent back only when a ticked run is gone: a refresh that left the page before a tick and came
    # back after it (a busy server) would otherwise untick it
    gone = any(p not in names for p in picked or [])
    ticks = gr.CheckboxGroup(choices=names, value=[p for p in picked if p in names]) if gone else \
        gr.CheckboxGroup(choices=names)
    return (runs_frame(listed), ticks,
            gr.Dropdown(choices=resumable, value=keep(resume_choice, resumable)),
            gr.Dropdown(choices=deletable, value=keep(delete_choice, deletable)))


def suggest_steps(name):
    """Twice the steps done, or the run's own target if it stopped short of it."""
    run = next((r for r in all_runs() if r["name"] == name), None)
    if run is None:
        return gr.Number()
    target = run["max_iters"] or 0
    return gr.Number(value=target if run["steps"] < target else max(1, run["steps"]) * 2)


def build(demo: gr.Blocks, tab: gr.Tab) -> None:
    """The Runs tab's components and events (call inside `with gr.Tab(...)`)."""
    gr.Markdown("### Every run in weights/\nTick runs to overlay their validation curves, read their latest samples "
                "side by side and see which settings differ. The ladder's rungs come last.")
    with gr.Row():
        sort = gr.Radio(["newest", "best val"], value="newest", label="Sort by", scale=3)
        refresh_btn = gr.Button("↻ Refresh", scale=1)
    table = gr.Dataframe(headers=COLUMNS, interactive=False, elem_id="runs-table", max_height=360, wrap=True)
    with gr.Row():
        picked = gr.CheckboxGroup([], label="Compare: tick several runs", elem_id="runs-picked", scale=4)
        x_axis = gr.Radio(list(X_AXES), value="steps", label="Curves against", scale=1)
    note = gr.Markdown()
    chart = gr.Image(label="Validation loss", elem_id="runs-chart", interactive=False, show_label=False,
                     visible=False)
    samples = gr.HTML(elem_id="runs-samples")
    settings = gr.Dataframe(settings_frame([]), interactive=False, label="Settings that differ",
                            elem_id="runs-settings", visible=False)  # its header from the start, not Gradio's "1 2 3"

    gr.Markdown("### Carry a run on\nA stopped, interrupted or finished run goes on from its last saved step with "
                "the same settings, exactly as `python -m train --resume`; watch it in the Train tab.")
    with gr.Row():
        resume_name = gr.Dropdown([], label="Run", allow_custom_value=True, scale=3)
        resume_steps = gr.Number(1000, label="Train up to step", precision=0, minimum=1, maximum=1_000_000, scale=2)
        resume_btn = gr.Button("Carry on", variant="primary", scale=1)
    resume_message = gr.Markdown()

    gr.Markdown("### Delete a run")
    with gr.Row():
        delete_name = gr.Dropdown([], label="Run to delete", allow_custom_value=True, scale=3)
        delete_btn = gr.Button("Delete…", variant="stop", scale=1)
    with gr.Row(visible=False) as confirm_row:
        confirm_text = gr.Markdown()
        confirm_btn = gr.Button("Yes, delete it", variant="stop")
        cancel_btn = gr.Button("Cancel")
    delete_message = gr.Markdown()

    def controls(profile: gr.OAuthProfile | None):
        """What this visitor may do here, shown before a click (as in the Share tab); the handlers check again."""
        return gr.Button(interactive=access.may_train(profile) is None), gr.Button(interactive=access.is_owner(profile))

    demo.load(controls, None, [resume_btn, delete_btn], api_visibility="private", concurrency_limit=None,
              show_progress="hidden")
    gr.api(list_runs, api_name="list_runs", concurrency_limit=None)
    lists = [table, picked, resume_name, delete_name]
    gr.on([demo.load, tab.select, refresh_btn.click, sort.change], refresh, [sort, picked, resume_name, delete_name],
          lists, api_visibility="private", concurrency_limit=None, show_progress="hidden")
    gr.on([picked.change, x_axis.change, refresh_btn.click], compare, [picked, x_axis, sort],
          [chart, samples, settings, note], api_visibility="private", concurrency_limit=None)
    resume_name.input(suggest_steps, resume_name, resume_steps, api_visibility="private")
    resume_btn.click(resume_training, [resume_name, resume_steps], resume_message, api_name="resume_training",
                     concurrency_limit=None)

    def ask(name):
        if not name:
            return gr.Row(visible=False), "", "Pick a run to delete first."
        return gr.Row(visible=True), f"Delete **weights/{name}** and everything in it? This cannot be undone.", ""

    delete_btn.click(ask, delete_name, [confirm_row, confirm_text, delete_message], api_visibility="private")
    cancel_btn.click(lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private")
    confirm_btn.click(delete_run, delete_name, delete_message, api_visibility="private").then(
        lambda: gr.Row(visible=False), None, confirm_row, api_visibility="private").then(
        refresh, [sort, picked, resume_name, delete_name], lists, api_visibility="private")
