"""The Ladder tab: retrace the lecture rung by rung, and read what each rung adds."""

from __future__ import annotations

import colorsys
import html

import gradio as gr
import pandas as pd

from gpt.ladder import rungs as ladder
from gpt.ladder import rung_code
from gpt.training import log as runlog
from gpt.training.background import rung_row
from gpt.errors import GPTError
from webapp import access, live
from webapp.state import DEVICE, WEIGHTS, chart_frame, optional_number, refused, runner, stop_training

PALETTE = ["#6b7280", "#0ea5e9", "#8b5cf6", "#ec4899", "#f97316", "#16a34a", "#dc2626",
           "#0f766e", "#a16207", "#4338ca", "#be123c", "#15803d", "#7c3aed", "#b45309"]


def rung_color(i: int) -> str:
    """The i-th rung's colour: the palette cycled, its hues turned by the golden angle each time round, so that a
    rung added to gpt/ladder/rungs.py gets a colour of its own."""
    color, turns = PALETTE[i % len(PALETTE)], i // len(PALETTE)
    if not turns:
        return color
    h, light, sat = colorsys.rgb_to_hls(*(int(color[k:k + 2], 16) / 255 for k in (1, 3, 5)))
    turned = colorsys.hls_to_rgb((h + 0.382 * turns) % 1.0, light, sat)
    return "#" + "".join(f"{round(c * 255):02x}" for c in turned)


def series() -> dict[str, str]:
    """The chart's series, from the rungs: each rung's curve, and the lecture's number faded in the same hue."""
    found = {}
    for i, r in enumerate(ladder.RUNGS):
        found[f"{r.number} {r.name}"] = rung_color(i)
        if r.lecture_val is not None:
            found[f"{r.number} lecture {r.lecture_val}"] = rung_color(i) + "66"
    return found


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
        if end and r["lecture_val"] is not None:  # the lecture's number, level across the rung's steps
            rows += [(0, r["lecture_val"], f"{r['rung']} lecture {r['lecture_val']}"),
                     (end, r["lecture_val"], f"{r['rung']} lecture {r['lecture_val']}")]
    if not rows:  # nothing climbed yet: the lecture's number for every rung, the levels a climb aims for
        for r in ladder.flight("lecture"):
            name = f"{r.number} lecture {r.lecture_val}"
            rows += [(0, r.lecture_val, name), (r.settings["max_iters"], r.lecture_val, name)]
    return chart_frame(rows, series(), ["step", "val loss", "rung"])


def ladder_table(s: dict) -> pd.DataFrame:
    vals = {r["rung"]: r["val"] for r in s["ladder"]}

    def gap(a, b):
        return None if a is None or b is None else round(a - b, 3)

    rows = [(r["rung"], r["change"], r["params"], None if r["val"] is None else round(r["val"], 3), r["lecture_val"],
             gap(r["val"], r["lecture_val"]), gap(r["val"], vals.get(ladder.rung(r["rung"]).before)),
             f"{r['time']:.0f} s" if r["time"] else r["state"], " ".join(r["sample"].split())[:80])
            for r in s["ladder"]]
    return pd.DataFrame(rows, columns=["rung", "what changed", "parameters", "our val", "lecture's val",
                                       "vs lecture", "vs rung before", "time", "sample"])


CLIMB_S = 5.0  # a climb's chart and table every 5 s (more for a crowd) and at each rung's change
DIFF_STYLE = {"+": "background:rgba(34,197,94,.18)", "-": "background:rgba(239,68,68,.16)", " ": ""}


def diff_html(lines: list[str]) -> str:
    """Diff lines as a block of code, added lines green and removed ones red (in light and dark themes alike)."""
    rows = "".join(f'<span style="display:block;{DIFF_STYLE[line[:1] or " "]}">{html.escape(line) or " "}</span>'
                   for line in lines)
    return f'<pre class="rung-diff" style="font-size:.8em;overflow-x:auto"><code>{rows}</code></pre>'


def rung_view(number, s: dict | None = None) -> str:
    """What a rung adds: the idea in words, the parameters, the val it reached, and the code, as diffs."""
    try:
        rung = ladder.rung(number)
    except GPTError as e:
        raise refused(e)
    before = ladder.rung(rung.before) if rung.before else None
    ours = {r["rung"]: r["val"] for r in climbed(s or runner.status())["ladder"]}
    bench, where = rung_code.flight_figures()
    added = rung_code.params_added(rung.number)
    facts = [f"- **builds on**: {f'rung {before.number} · {before.name}' if before else 'nothing: the first rung'}",
             f"- **parameters it adds**: {added:+,}" if before else f"- **parameters**: {added:,}"]
    if rung.lecture_val is not None:
        facts.append(f"- **the lecture's val**: {rung.lecture_val}")
    if ours.get(rung.number) is not None:
        vs = (f", {ours[rung.number] - ours[before.number]:+.3f} against rung {before.number}"
              if before and ours.get(before.number) is not None else "")
        facts.append(f"- **climbed here**: val {ours[rung.number]:.3f}{vs}")
    else:
        facts.append("- **climbed here**: not yet (tick it above and press Climb the ladder)")
    if rung.number in bench:
        row = bench[rung.number]
        gap = (f", {row['gap_mean']:+.4f} against rung {row['before']} over {row['seeds_paired']} seeds"
               if "gap_mean" in row else "")
        verdict = ("" if "helps" not in row else ": **helps**" if row["helps"] else ": **does not help here**")
        facts.append(f"- **measured**: val {row['val_mean']:.4f} over the whole val split{gap}{verdict} "
                     f"<small>({where})</small>")
    parts = [f"#### Rung {rung.number} · {rung.name}", f"*{rung.change}*", rung.why, "\n".join(facts)]
    settings = rung_code.settings_diff(rung)
    if settings:
        parts.append("**The settings it changes**\n\n" + diff_html(settings))
    for piece in rung_code.pieces(rung.number):
        head = f"**`{piece.path}` · `{piece.name}`**" + (
            f" — replaces `{piece.replaces[0]}` of `{piece.replaces[1]}`" if piece.replaces else " — new")
        parts.append(head + "\n\n" + diff_html(piece.diff))
    if not settings and not rung_code.pieces(rung.number):
        parts.append("*No code changes: the same code as the rung before.*")
    return "\n\n".join(parts)


def climbed(s: dict) -> dict:
    """The ladder as the runner has it; after a restart (nothing climbed since), the rungs trained on disk."""
    if s["ladder"]:
        return s
    runs = [(r, runlog.read(WEIGHTS / "ladder" / f"rung-{r.number}")) for r in ladder.RUNGS]
    rows = [rung_row(r, run) for r, run in runs if run and run.evals]
    return {**s, "ladder": rows}


def poll_ladder(was_running: bool, shown, profile: gr.OAuthProfile | None, request: gr.Request):
    s = climbed(runner.status())
    may_stop = s["state"] == "running" and access.may_stop(profile, request, s["started_by"])
    running = s["state"] in ("running", "stopping")
    ended = was_running and not running
    message = "" if ended else gr.skip()  # "Climbing …" goes when the climb ends
    view = rung_view(shown, s) if ended else gr.skip()  # the code view fills in the figures just measured
    return (ladder_frame(s), ladder_table(s),
            gr.Button(interactive=not runner.running and access.may_train(profile) is None),
            gr.Button(interactive=may_stop), running, message, view,
            gr.Timer(live.every(CLIMB_S), active=running and bool(runner.ladder)))


def intro() -> str:
    """The tab's first words: the two flights, their ranges read from the rungs."""
    return (
        "### Retrace the lecture, rung by rung\n"
        "The lecture improves its model one idea at a time and quotes the validation loss at each step. "
        "Rungs 1-6 use its small settings (block 8, batch 32, 32 channels, lr 1e-3, 5000 steps) and take "
        "about two minutes together on a CPU; rung 7 is the full lecture model: pick it on a GPU. "
        f"Rungs {ladder.span(ladder.flight('beyond'))} go **past the lecture**: one idea from the years since per "
        "rung, on the lecture's model at a CPU's size, each trained for the same 90 seconds.")


def build(demo: gr.Blocks, tab: gr.Tab) -> None:
    """The Ladder tab's components and events (call inside `with gr.Tab(...)`)."""
    gr.Markdown(intro())
    with gr.Row():
        # values are strings: Gradio's API page documents a CheckboxGroup's choices as strings
        rungs = gr.CheckboxGroup([(f"{r.number} · {r.name}", str(r.number)) for r in ladder.RUNGS],
                                 value=[str(r.number) for r in ladder.RUNGS[:6]], label="Rungs", scale=4,
                                 elem_id="ladder-rungs")
        steps_per_rung = gr.Textbox("", label="Steps per rung", placeholder="empty = the lecture's", max_lines=1,
                                    info="a whole number", scale=1)  # can be empty, unlike a gr.Number
    with gr.Row():
        ladder_btn = gr.Button("Climb the ladder", variant="primary")
        ladder_stop = gr.Button("Stop", variant="stop")
    message = gr.Markdown()
    colors = series()
    chart = gr.LinePlot(x="step", y="val loss", color="rung", color_map=colors, height=360,
                        colors_in_legend=[k for k in colors if " lecture " not in k],  # the faded levels need none
                        title="Validation loss of each rung (faded: the lecture's number)", elem_id="ladder-chart")
    table = gr.Dataframe(label="The ladder", wrap=True)
    gr.Markdown("### What each rung adds\nThe code a rung adds to the one before, read from the modules that "
                "train it, with the idea in words and what it bought.")
    shown = gr.Dropdown([(f"{r.number} · {r.name}", r.number) for r in ladder.RUNGS], value=2, label="Rung",
                        elem_id="rung-pick")
    view = gr.Markdown(elem_id="rung-code")
    gr.Markdown("*What attention looks at, what the next character is drawn from and the characters' map: the "
                "Insides tab, for any rung's weights.*")

    ladder_btn.click(start_ladder, [rungs, steps_per_rung], message, api_name="start_ladder",
                     concurrency_limit=None).then(None, js=live.REFRESH_JS)
    ladder_stop.click(stop_training, None, message, api_visibility="private",
                      concurrency_limit=None).then(None, js=live.REFRESH_JS)
    timer = gr.Timer(CLIMB_S, active=False)  # on while a climb goes; webapp/live.js wakes the tab at each rung's change
    refresh = gr.Button("refresh", elem_classes=["live-refresh", "gpt-hidden"])
    climbing = gr.Checkbox(False, visible=False)  # held in the page, not a gr.State (webapp/train.py says why)
    polled = [chart, table, ladder_btn, ladder_stop, climbing, message, view, timer]
    gr.on([timer.tick, demo.load], poll_ladder, [climbing, shown], polled, api_visibility="private",
          concurrency_limit=None, show_progress="hidden", trigger_mode="always_last")
    refresh.click(poll_ladder, [climbing, shown], polled, api_visibility="private", concurrency_limit=None,
                  show_progress="hidden", trigger_mode="multiple")  # not held back by a tick a restart left pending
    gr.on([shown.change, tab.select, demo.load], rung_view, shown, view, api_visibility="private", concurrency_limit=None,
          show_progress="hidden")
