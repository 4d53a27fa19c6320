"""The Ladder tab: retrace the lecture rung by rung, and look at what attention looks at."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from gpt import ladder
from gpt.attention import MAX_CHARS, attention_image, prompt_maps
from gpt.runlog import read_log
from gpt.errors import GPTError
from webapp import access
from webapp.state import (DEVICE, WEIGHTS, chart_frame, load_weights, optional_number, refresh_weights, refused,
                          runner, stop_training, weights_choices)

RUNG_COLORS = ["#6b7280", "#0ea5e9", "#8b5cf6", "#ec4899", "#f97316", "#16a34a", "#dc2626"]
SERIES = {}
for r, color in zip(ladder.RUNGS, RUNG_COLORS):
    SERIES[f"{r.number} {r.name}"] = color
    SERIES[f"{r.number} lecture {r.lecture_val}"] = color + "66"  # the same hue, faded


def start_ladder(rungs, steps_per_rung, profile: gr.OAuthProfile | None, request: gr.Request):
    """Train the chosen rungs ('1'-'7') one after another with the lecture's settings. Returns a message."""
    access.require_training(profile)
    try:
        steps = optional_number("steps per rung", steps_per_rung, low=1)
        runner.start_ladder([int(r) for r in rungs or []], steps,
                            started_by=access.starter(profile, request),
                            limits=access.limits(profile))
    except (GPTError, ValueError, TypeError) as e:
        raise refused(e)
    numbers = [str(int(r)) for r in rungs]
    return (f"Climbing rung{'s' if len(numbers) > 1 else ''} {', '.join(numbers)} on {DEVICE}. "
            f"Every open tab shows the ladder.")


def ladder_frame(s: dict) -> pd.DataFrame:
    rows = []
    for r in s["ladder"]:
        rows += [(step, val, f"{r['rung']} {r['name']}") for step, val in r["curve"]]
        end = max((step for step, _ in r["curve"]), default=0)
        if end:  # the lecture's number, level across the rung's steps
            rows += [(0, r["lecture_val"], f"{r['rung']} lecture {r['lecture_val']}"),
                     (end, r["lecture_val"], f"{r['rung']} lecture {r['lecture_val']}")]
    if not rows:  # nothing climbed yet: the lecture's number for every rung, the levels a climb aims for
        for r in ladder.RUNGS:
            name = f"{r.number} lecture {r.lecture_val}"
            rows += [(0, r.lecture_val, name), (r.settings["max_iters"], r.lecture_val, name)]
    return chart_frame(rows, SERIES, ["step", "val loss", "rung"])


def ladder_table(s: dict) -> pd.DataFrame:
    rows = [(r["rung"], r["change"], r["params"], None if r["val"] is None else round(r["val"], 3), r["lecture_val"],
             None if r["val"] is None else round(r["val"] - r["lecture_val"], 3),
             f"{r['time']:.0f} s" if r["time"] else r["state"], " ".join(r["sample"].split())[:80])
            for r in s["ladder"]]
    return pd.DataFrame(rows, columns=["rung", "what changed", "parameters", "our val", "lecture's val", "difference",
                                       "time", "sample"])


def climbed(s: dict) -> dict:
    """The ladder as the runner has it; after a restart (nothing climbed since), the rungs trained on disk."""
    if s["ladder"]:
        return s
    rows = []
    for r in ladder.RUNGS:
        log = read_log(WEIGHTS / "ladder" / f"rung-{r.number}")
        if not log or not log["evals"]:
            continue
        curve = [(e["step"], e["val_loss"]) for e in log["evals"]]
        rows.append({"rung": r.number, "name": r.name, "change": r.change, "lecture_val": r.lecture_val,
                     "params": log["params"], "val": min(v for _, v in curve), "curve": curve,
                     "time": log["evals"][-1].get("elapsed") if log["end"] else None,
                     "sample": log["evals"][-1].get("sample", ""), "state": log["end"] or "interrupted"})
    return {**s, "ladder": rows}


def poll_ladder(was_running: bool, profile: gr.OAuthProfile | None, request: gr.Request):
    s = climbed(runner.status())
    may_stop = s["state"] == "running" and access.may_stop(profile, request, s["started_by"])
    running = s["state"] in ("running", "stopping")
    message = "" if was_running and not running else gr.skip()  # "Climbing …" goes when the climb ends
    return (ladder_frame(s), ladder_table(s),
            gr.Button(interactive=not runner.running and access.may_train(profile) is None),
            gr.Button(interactive=may_stop), running, message)


def show_attention(weights_name, prompt, layer=1):
    """Heatmaps of what each character attends to, per head, for prompt (its last 64 characters): one layer's
    (drawn large enough to read the characters), or every layer's with layer 0."""
    try:
        layer = optional_number("layer", layer) or 0
        model = load_weights(weights_name)
        maps, text = prompt_maps(model, prompt)
        return attention_image(maps, text, layer)
    except (GPTError, ValueError) as e:
        raise refused(e)


def build(demo: gr.Blocks, tab: gr.Tab) -> None:
    """The Ladder tab's components and events (call inside `with gr.Tab(...)`)."""
    gr.Markdown(
        "### Retrace the lecture, rung by rung\n"
        "The lecture improves its model one idea at a time and quotes the validation loss at each step. "
        "Rungs 1-6 use its small settings (block 8, batch 32, 32 channels, lr 1e-3, 5000 steps) and take "
        "about two minutes together on a CPU; rung 7 is the full lecture model: pick it on a GPU.")
    with gr.Row():
        # values are strings: Gradio's API page documents a CheckboxGroup's choices as strings
        rungs = gr.CheckboxGroup([(f"{r.number} · {r.name}", str(r.number)) for r in ladder.RUNGS],
                                 value=[str(r.number) for r in ladder.RUNGS[:6]], label="Rungs", scale=4)
        steps_per_rung = gr.Textbox("", label="Steps per rung", placeholder="empty = the lecture's", max_lines=1,
                                    info="a whole number", scale=1)  # can be empty, unlike a gr.Number
    with gr.Row():
        ladder_btn = gr.Button("Climb the ladder", variant="primary")
        ladder_stop = gr.Button("Stop", variant="stop")
    message = gr.Markdown()
    chart = gr.LinePlot(x="step", y="val loss", color="rung", color_map=SERIES, height=360,
                        colors_in_legend=[k for k in SERIES if " lecture " not in k],  # the faded levels need none
                        title="Validation loss of each rung (faded: the lecture's number)", elem_id="ladder-chart")
    table = gr.Dataframe(label="The ladder", wrap=True)
    gr.Markdown("### What attention looks at\nEach map shows, for every character (row), how much it attends "
                "to each earlier character (column); the future is blank, because the mask hides it.")
    choices = weights_choices()
    with gr.Row():
        attn_weights = gr.Dropdown(choices, value=(choices or [None])[0], allow_custom_value=True, label="Weights",
                                   scale=1)
        attn_prompt = gr.Textbox(value="ROMEO:\nWhat light through yonder",
                                 label=f"Text (up to {MAX_CHARS} characters are shown)", scale=3)
        attn_layer = gr.Number(1, label="Layer (0: all)", precision=0, minimum=0, scale=1)
    attn_btn = gr.Button("Show attention")
    attn_image = gr.Image(label="Attention of each head (the full-screen button zooms in)", type="pil",
                          format="png", elem_id="attention-maps")

    ladder_btn.click(start_ladder, [rungs, steps_per_rung], message, api_name="start_ladder", concurrency_limit=None)
    ladder_stop.click(stop_training, None, message, api_visibility="private", concurrency_limit=None)
    timer = gr.Timer(1.0)
    climbing = gr.State(False)
    gr.on([timer.tick, demo.load], poll_ladder, climbing, [chart, table, ladder_btn, ladder_stop, climbing, message],
          api_visibility="private", concurrency_limit=None, show_progress="hidden")
    gr.on([demo.load, tab.select], refresh_weights, attn_weights, attn_weights,
          api_visibility="private", concurrency_limit=None, show_progress="hidden")
    gr.on([attn_btn.click, attn_prompt.submit], show_attention, [attn_weights, attn_prompt, attn_layer], attn_image,
          api_name="attention", concurrency_limit=4)
