"""The app: train a GPT from scratch and watch it learn; type a prompt and read Shakespeare.

    python app.py [--host 127.0.0.1] [--port 7860] [--share]

UI wiring only: training runs in gpt.runner, generation in gpt.sampling, weights in gpt.weights.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls out of the machine at start
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from gpt import hub, ladder, weights  # noqa: E402
from gpt.attention import MAX_CHARS, attention_image, prompt_maps  # noqa: E402
from gpt.data import SHAKESPEARE  # noqa: E402
from gpt.device import describe_device, pick_device  # noqa: E402
from gpt.errors import GPTError  # noqa: E402
from gpt.presets import PRESETS  # noqa: E402
from gpt.runner import TrainingRunner  # noqa: E402
from gpt.sampling import inference_model, stream_text  # noqa: E402
from gpt.trainer import TrainConfig  # noqa: E402

ROOT = Path(__file__).resolve().parent
WEIGHTS = Path(os.environ.get("GPT_WEIGHTS_DIR", ROOT / "weights"))
MAX_UPLOAD_MB = 10
MAX_NEW_TOKENS = 5000
LIVE = "the model training now"
LECTURE_VAL = 1.48  # the lecture's final validation loss, drawn as a reference line
FIELDS = ["n_layer", "n_head", "n_embd", "block_size", "batch_size", "learning_rate", "max_iters", "dropout",
          "eval_interval", "seed"]

runner = TrainingRunner(WEIGHTS, max_text_bytes=MAX_UPLOAD_MB * 1_000_000)
DEVICE = describe_device(pick_device())


# --- Train tab ---


def preset_values(preset: str) -> list:
    config = TrainConfig.from_preset(preset)
    return [getattr(config, f) for f in FIELDS]


def start_training(preset, n_layer, n_head, n_embd, block_size, batch_size, learning_rate, max_iters, dropout,
                   eval_interval, seed, text_source, text_file, run_name):
    """Start a training run in the server's background thread; every viewer sees it. Returns a message."""
    values = dict(zip(FIELDS, [n_layer, n_head, n_embd, block_size, batch_size, learning_rate, max_iters, dropout,
                               eval_interval, seed]))
    try:
        if text_source == "My own text":
            if not text_file:
                raise GPTError("upload a .txt file first, or choose Tiny Shakespeare")
            values["data"] = str(text_file)
        else:
            values["data"] = SHAKESPEARE
        config = TrainConfig.from_preset(preset, **values)
        name = run_name or f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}"
        out = runner.start(config, name)
    except GPTError as e:
        gr.Warning(str(e))
        return f"⚠️ {e}"
    return f"Started **{out.name}** on {DEVICE}. Every open tab shows this run."


def stop_training():
    """Stop the run after its current step; the best weights so far are kept."""
    if runner.stop():
        return "Stopping after this step; the best weights so far are kept."
    return "No run is going."


def training_status() -> dict:
    """The run's state, step, losses, tokens/s, ETA and samples, as JSON."""
    status = runner.status()
    status["steps"] = [list(s) for s in status["steps"]]
    return status


def _duration(seconds) -> str:
    seconds = int(seconds or 0)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def progress_html(s: dict) -> str:
    if s["state"] == "idle":
        return "<div class='status'>No run yet. Pick a preset, adjust it if you like, and press <b>Start</b>.</div>"
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
    headline = {
        "running": f"Training <b>{s['run']}</b> · {s['params'] / 1e6:.2f}M parameters · {s['device']}"
        if s["params"] else f"Preparing <b>{s['run']}</b>…",
        "stopping": f"Stopping <b>{s['run']}</b> after this step…",
        "finished": f"Finished <b>{s['run']}</b>: its best weights are in weights/{s['run']} and in the Generate tab.",
        "stopped": f"Stopped <b>{s['run']}</b>: its best weights are in weights/{s['run']} and in the Generate tab.",
        "failed": f"<b>{s['run']}</b> failed: {s['error']}",
    }[s["state"]]
    c = s["config"]
    settings = (f"{c['n_layer']} layers · {c['n_head']} heads · {c['n_embd']} wide · block {c['block_size']} · "
                f"batch {c['batch_size']} · dropout {c['dropout']} · "
                f"{'Tiny Shakespeare' if c['data'] == SHAKESPEARE else 'your text'}")
    return (f"<div class='status'><div>{headline}</div><div class='settings'>{settings}</div>"
            f"<progress value='{done:.4f}' max='1'></progress> <b>{done:.0%}</b>"
            f"<div>{' · '.join(figures)}</div></div>")


SERIES = {"train (each batch)": "#c7d2fe", "train": "#4f46e5", "val": "#f97316", "lecture: 1.48": "#9ca3af"}


def loss_frame(s: dict) -> pd.DataFrame:
    rows = [(step, loss, "train (each batch)") for step, loss in s["steps"]]
    rows += [(e["step"], e["train_loss"], "train") for e in s["evals"]]
    rows += [(e["step"], e["val_loss"], "val") for e in s["evals"]]
    rows += [(0, LECTURE_VAL, "lecture: 1.48"), (max(1, s["step"]), LECTURE_VAL, "lecture: 1.48")]
    return chart_frame(rows, SERIES, ["step", "loss", "series"])


def chart_frame(rows: list[tuple], series: dict, columns: list[str]) -> pd.DataFrame:
    """Rows (x, y, series) for a gr.LinePlot that will be updated live.

    Gradio's chart keeps the series of its first frame: a one-point (invisible) stand-in for each series that
    has no data yet makes it draw them all once they arrive. Explicit dtypes: an empty column would make the
    chart treat the axes as categories.
    """
    y = rows[0][1] if rows else LECTURE_VAL  # a stand-in at a value already on the chart: the axes stay put
    rows = rows + [(0, y, name) for name in series if not any(r[2] == name for r in rows)]
    return pd.DataFrame(rows, columns=columns).astype({columns[0]: "int64", columns[1]: "float64"})


def samples_markdown(s: dict) -> str:
    if not s["evals"]:
        return "*Samples appear here at every evaluation: noise first, then something like Shakespeare.*"
    shown = s["evals"][-6:] if len(s["evals"]) <= 7 else [s["evals"][0]] + s["evals"][-6:]  # the first for contrast
    return "### Samples, newest first\n" + "\n\n".join(
        f"**step {e['step']:,}** · val {e['val_loss']:.3f}\n```text\n{e['sample'].strip()}\n```"
        for e in reversed(shown))


def poll():
    s = runner.status()
    running = s["state"] in ("running", "stopping")
    return (progress_html(s), loss_frame(s), samples_markdown(s),
            gr.Button(interactive=not running), gr.Button(interactive=s["state"] == "running"))


# --- Ladder tab ---

RUNG_COLORS = ["#6b7280", "#0ea5e9", "#8b5cf6", "#ec4899", "#f97316", "#16a34a", "#dc2626"]
LADDER_SERIES = {}
for r, color in zip(ladder.RUNGS, RUNG_COLORS):
    LADDER_SERIES[f"{r.number} {r.name}"] = color
    LADDER_SERIES[f"{r.number} lecture {r.lecture_val}"] = color + "66"  # the same hue, faded


def start_ladder(rungs, steps_per_rung):
    """Train the chosen rungs (numbers 1-7) one after another with the lecture's settings. Returns a message."""
    try:
        runner.start_ladder([int(r) for r in rungs or []], steps_per_rung or None)
    except (GPTError, ValueError, TypeError) as e:
        gr.Warning(str(e))
        return f"⚠️ {e}"
    return f"Climbing rungs {', '.join(str(int(r)) for r in rungs)} on {DEVICE}. Every open tab shows the ladder."


def ladder_frame(s: dict) -> pd.DataFrame:
    rows = []
    for r in s["ladder"]:
        rows += [(step, val, f"{r['rung']} {r['name']}") for step, val in r["curve"]]
        end = max((step for step, _ in r["curve"]), default=0)
        if end:  # the lecture's number, level across the rung's steps
            rows += [(0, r["lecture_val"], f"{r['rung']} lecture {r['lecture_val']}"),
                     (end, r["lecture_val"], f"{r['rung']} lecture {r['lecture_val']}")]
    return chart_frame(rows, LADDER_SERIES, ["step", "val loss", "rung"])


def ladder_table(s: dict) -> pd.DataFrame:
    rows = [(r["rung"], r["change"], r["params"], None if r["val"] is None else round(r["val"], 3), r["lecture_val"],
             None if r["val"] is None else round(r["val"] - r["lecture_val"], 3),
             f"{r['time']:.0f} s" if r["time"] else r["state"], " ".join(r["sample"].split())[:80])
            for r in s["ladder"]]
    return pd.DataFrame(rows, columns=["rung", "what changed", "parameters", "our val", "lecture's val", "difference",
                                       "time", "sample"])


def poll_ladder():
    s = runner.status()
    return ladder_frame(s), ladder_table(s), gr.Button(interactive=not runner.running)


def show_attention(weights_name, prompt):
    """Heatmaps of what each character attends to, per layer and head, for prompt (its last 64 characters)."""
    try:
        model = load_weights(weights_name)
        maps, text = prompt_maps(model, prompt)
    except (GPTError, ValueError) as e:
        raise gr.Error(str(e), print_exception=False)
    return attention_image(maps, text)


# --- Generate tab ---


def weights_choices():
    choices = weights.list_weights(WEIGHTS)
    if runner.running:
        choices = [LIVE] + choices
    return choices


def refresh_weights(current, choices=None):
    choices = weights_choices() if choices is None else choices
    value = current if current in choices else (choices[0] if choices else None)
    return gr.Dropdown(choices=choices, value=value)


def weights_folder(name: str) -> Path:
    """The folder of saved weights `name`, or a GPTError for a name that is not in the list."""
    if name in weights.list_weights(WEIGHTS):
        return WEIGHTS / name
    raise GPTError(f"no weights named {name!r}: pick one from the list")


def load_weights(name: str, inference: bool = False):
    if name == LIVE:
        model = runner.snapshot()
        return inference_model(model) if inference else model
    return weights.load_cached(weights_folder(name), inference=inference)


def generate(weights_name, prompt, max_new_tokens, temperature, top_k, top_p, seed):
    """Stream a continuation of prompt. Yields the text so far and a line of figures."""
    try:
        model = load_weights(weights_name, inference=True)  # int8 weights where that is faster (see README, Speed)
        prompt = prompt or ""
        stream = stream_text(model, prompt, max_new_tokens=int(max_new_tokens), temperature=float(temperature),
                             top_k=int(top_k or 0) or None, top_p=float(top_p or 1.0),  # 0 and 1 mean off
                             seed=int(seed) if seed not in (None, "") else None)
    except (GPTError, ValueError, TypeError) as e:
        raise gr.Error(str(e), print_exception=False)
    text, start, shown, n = prompt, time.perf_counter(), 0.0, 0
    for n, ch in enumerate(stream, start=1):
        text += ch
        now = time.perf_counter()
        if now - shown > 0.05:  # about 20 updates a second: smooth to read, light on the connection
            shown = now
            yield text, f"{n:,} tokens · {n / (now - start):,.0f} tokens/s"
    elapsed = time.perf_counter() - start
    rate = f" · **{n / elapsed:,.0f} tokens/s**" if n else ""
    yield text, f"{n:,} tokens (characters) in {elapsed:.2f} s{rate} · weights: {weights_name}"


# --- Share tab ---


def _reporter(progress: gr.Progress):
    return lambda fraction, message: progress(fraction, desc=message)


def push_to_hub(weights_name, repo_id, token, private, message, progress=gr.Progress()):
    """Upload weights/<weights_name> to the Hub model repo repo_id. Returns a message with the repo's URL."""
    try:
        url = hub.push(weights_folder(weights_name), repo_id, token=token, private=bool(private),
                       message=message or None, progress=_reporter(progress))
    except GPTError as e:
        gr.Warning(str(e))
        return f"⚠️ {e}"
    return f"✅ Pushed **{weights_name}** to [{repo_id}]({url}). Anyone can load it with " \
           f"`GPT.from_pretrained(\"{repo_id}\")`{' (once they have access: it is private)' if private else ''}."


def pull_from_hub(repo_id, revision, name, overwrite, token, progress=gr.Progress()):
    """Download the Hub repo repo_id into weights/<name> and select it for generation. Returns a message."""
    try:
        dest = hub.pull(repo_id, revision=revision, name=name, root=WEIGHTS, token=token, overwrite=bool(overwrite),
                        progress=_reporter(progress))
    except GPTError as e:
        gr.Warning(str(e))
        return f"⚠️ {e}", gr.Dropdown()
    choices = weights_choices()
    return (f"✅ Pulled **{repo_id}** into weights/{dest.name}: it is selected in the Generate tab.",
            gr.Dropdown(choices=choices, value=dest.name))


def publish_space(space_id, weights_name, token, private, progress=gr.Progress()):
    """Publish this app with weights/<weights_name> as its default weights to the Gradio Space space_id."""
    try:
        url = hub.publish_space(space_id, weights_folder(weights_name), token=token, private=bool(private),
                                progress=_reporter(progress))
    except GPTError as e:
        gr.Warning(str(e))
        return f"⚠️ {e}"
    return f"✅ Published: [{url}]({url}) builds and starts in a few minutes, with **{weights_name}** as its weights."


# --- layout ---

CSS = """
.status progress { width: 80%; height: 14px; vertical-align: middle; }
.status div { margin: 4px 0; }
.status .settings { color: #6b7280; font-size: 0.9em; }
"""

with gr.Blocks(title="GPT from scratch") as demo:
    gr.Markdown(
        "# GPT from scratch\n"
        "The decoder-only transformer of Andrej Karpathy's lecture *Let's build GPT: from scratch, in code, "
        "spelled out*, reading and writing one character at a time. **Train** one and watch its loss fall and "
        "its samples turn from noise into Shakespeare; **Generate** text from the weights that ship with the app "
        "or from your own runs."
    )
    with gr.Tab("Train"):
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                preset = gr.Dropdown(list(PRESETS), value="cpu", label="Preset",
                                     info="cpu: about 2.5 min on 2 cores · lecture: the lecture's final model (GPU) · "
                                          "tiny: seconds")
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
                seed = gr.Number(defaults.seed, label="Seed", precision=0)
                text_source = gr.Radio(["Tiny Shakespeare", "My own text"], value="Tiny Shakespeare",
                                       label="Training text")
                text_file = gr.File(label=f"Your text: a UTF-8 .txt file, up to {MAX_UPLOAD_MB} MB",
                                    file_types=[".txt"], type="filepath", visible=False)
                run_name = gr.Textbox(label="Run name", placeholder="empty: <preset>-<date>-<time>",
                                      info="the weights are saved in weights/<run name>")
                gr.Markdown(f"Runs on: **{DEVICE}**")
                with gr.Row():
                    start_btn = gr.Button("Start", variant="primary")
                    stop_btn = gr.Button("Stop", variant="stop", interactive=False)
                message = gr.Markdown()
            with gr.Column(scale=2):
                progress = gr.HTML()
                chart = gr.LinePlot(x="step", y="loss", color="series", title="Loss (lower is better)",
                                    elem_id="loss-chart",
                                    y_title="cross-entropy loss", height=320,
                                    color_map=SERIES)
                samples = gr.Markdown(max_height=520)

    with gr.Tab("Generate") as generate_tab:
        with gr.Row():
            weights_dd = gr.Dropdown(weights_choices(), value=(weights_choices() or [None])[0], label="Weights",
                                     allow_custom_value=True,  # the list changes as runs finish; generate() checks
                                     info="the shipped default, your runs, or the model training right now",
                                     scale=4)
            refresh_btn = gr.Button("↻ Refresh list", scale=1)
        prompt = gr.Textbox(label="Prompt", value="ROMEO:", lines=2,
                            placeholder="empty: start from a new line, as in the lecture")
        with gr.Row():
            max_new_tokens = gr.Slider(1, MAX_NEW_TOKENS, value=500, step=1, label="Characters to generate")
            temperature = gr.Slider(0, 2, value=0.8, step=0.05, label="Temperature", info="0 = always the likeliest")
        with gr.Row():
            top_k = gr.Slider(0, 100, value=40, step=1, label="Top-k", info="0 = off")
            top_p = gr.Slider(0.05, 1, value=1.0, step=0.05, label="Top-p", info="1 = off")
            gen_seed = gr.Number(None, label="Seed", precision=0, info="empty = different every time")
        with gr.Row():
            gen_btn = gr.Button("Generate", variant="primary", scale=3)
            gen_stop = gr.Button("Stop generating", scale=1)
        output = gr.Textbox(label="Generated text", lines=16, max_lines=40)
        gen_stats = gr.Markdown()

    with gr.Tab("Ladder") as ladder_tab:
        gr.Markdown(
            "### Retrace the lecture, rung by rung\n"
            "The lecture improves its model one idea at a time and quotes the validation loss at each step. "
            "Rungs 1-6 use its small settings (block 8, batch 32, 32 channels, lr 1e-3, 5000 steps) and take "
            "about two minutes together on a CPU; rung 7 is the full lecture model: pick it on a GPU.")
        with gr.Row():
            rungs = gr.CheckboxGroup([(f"{r.number} · {r.name}", r.number) for r in ladder.RUNGS],
                                     value=[r.number for r in ladder.RUNGS[:6]], label="Rungs", scale=4)
            steps_per_rung = gr.Number(None, label="Steps per rung", precision=0, minimum=1, maximum=100_000,
                                       info="empty = the lecture's", scale=1)
        with gr.Row():
            ladder_btn = gr.Button("Climb the ladder", variant="primary")
            ladder_stop = gr.Button("Stop", variant="stop")
        ladder_message = gr.Markdown()
        ladder_chart = gr.LinePlot(x="step", y="val loss", color="rung", color_map=LADDER_SERIES, height=360,
                                   title="Validation loss of each rung (faded: the lecture's number)",
                                   elem_id="ladder-chart")
        ladder_df = gr.Dataframe(label="The ladder", wrap=True)
        gr.Markdown("### What attention looks at\nEach map shows, for every character (row), how much it attends "
                    "to each earlier character (column); the future is blank, because the mask hides it.")
        with gr.Row():
            attn_weights = gr.Dropdown(weights_choices(), value=(weights_choices() or [None])[0],
                                       allow_custom_value=True, label="Weights", scale=1)
            attn_prompt = gr.Textbox(value="ROMEO:\nWhat light through yonder", label=f"Text (up to {MAX_CHARS} "
                                     f"characters are shown)", scale=3)
        attn_btn = gr.Button("Show attention")
        attn_image = gr.Image(label="Attention per layer (rows) and head (columns)", type="pil", format="png",
                              elem_id="attention-maps")

    with gr.Tab("Share") as share_tab:
        gr.Markdown("### Share on the Hugging Face Hub\n"
                    "Push your weights to a model repo (with a model card, loss curve and a sample), pull anyone's, "
                    "or publish this whole app as a Space running your weights.")
        hub_token = gr.Textbox(label="Hugging Face token", type="password", placeholder="empty: use HF_TOKEN",
                               info="a write token from huggingface.co/settings/tokens; used for this request only, "
                                    "never stored")
        with gr.Row():
            with gr.Column():
                gr.Markdown("#### Push weights")
                push_weights = gr.Dropdown(weights.list_weights(WEIGHTS), value="default", label="Weights",
                                           allow_custom_value=True)
                push_repo = gr.Textbox(label="Model repo", placeholder="user/my-shakespeare-gpt")
                push_private = gr.Checkbox(False, label="Private")
                push_message = gr.Textbox(label="Commit message", placeholder="empty: a description of the weights")
                push_btn = gr.Button("Push to the Hub", variant="primary")
                push_result = gr.Markdown()
            with gr.Column():
                gr.Markdown("#### Pull weights")
                pull_repo = gr.Textbox(label="Model repo", placeholder="user/their-gpt")
                pull_revision = gr.Textbox(label="Revision", placeholder="empty: main (or a branch, tag, commit)")
                pull_name = gr.Textbox(label="Save as weights/…", placeholder="empty: the repo's name")
                pull_overwrite = gr.Checkbox(False, label="Replace it if it exists")
                pull_btn = gr.Button("Pull from the Hub", variant="primary")
                pull_result = gr.Markdown()
            with gr.Column():
                gr.Markdown("#### Publish the app as a Space")
                space_repo = gr.Textbox(label="Space", placeholder="user/my-gpt-space")
                space_weights = gr.Dropdown(weights.list_weights(WEIGHTS), value="default",
                                            label="Weights it serves", allow_custom_value=True)
                space_private = gr.Checkbox(False, label="Private")
                space_btn = gr.Button("Publish the Space", variant="primary")
                space_result = gr.Markdown()

    # wiring
    preset.change(preset_values, preset, [n_layer, n_head, n_embd, block_size, batch_size, learning_rate, max_iters,
                                          dropout, eval_interval, seed], api_visibility="private")
    text_source.change(lambda s: gr.File(visible=s == "My own text"), text_source, text_file,
                       api_visibility="private")
    start_btn.click(start_training, [preset, n_layer, n_head, n_embd, block_size, batch_size, learning_rate,
                                     max_iters, dropout, eval_interval, seed, text_source, text_file, run_name],
                    message, api_name="start_training", concurrency_limit=None)
    stop_btn.click(stop_training, None, message, api_name="stop_training", concurrency_limit=None)
    gr.api(training_status, api_name="training_status", concurrency_limit=None)
    timer = gr.Timer(1.0)  # every tab polls the one server-owned run
    gr.on([timer.tick, demo.load], poll, None, [progress, chart, samples, start_btn, stop_btn],
          api_visibility="private", concurrency_limit=None, show_progress="hidden")
    gr.on([demo.load, generate_tab.select, refresh_btn.click], refresh_weights, weights_dd, weights_dd,
          api_visibility="private", concurrency_limit=None, show_progress="hidden")
    gr.on([demo.load, ladder_tab.select], refresh_weights, attn_weights, attn_weights,
          api_visibility="private", concurrency_limit=None, show_progress="hidden")
    for dropdown in (push_weights, space_weights):
        gr.on([demo.load, share_tab.select], lambda current: refresh_weights(current, weights.list_weights(WEIGHTS)),
              dropdown, dropdown, api_visibility="private",
              concurrency_limit=None, show_progress="hidden")
    push_btn.click(push_to_hub, [push_weights, push_repo, hub_token, push_private, push_message], push_result,
                   api_name="push_to_hub", concurrency_limit=2)
    pull_btn.click(pull_from_hub, [pull_repo, pull_revision, pull_name, pull_overwrite, hub_token],
                   [pull_result, weights_dd], api_name="pull_from_hub", concurrency_limit=2)
    space_btn.click(publish_space, [space_repo, space_weights, hub_token, space_private], space_result,
                    api_name="publish_space", concurrency_limit=2)
    ladder_btn.click(start_ladder, [rungs, steps_per_rung], ladder_message, api_name="start_ladder",
                     concurrency_limit=None)
    ladder_stop.click(stop_training, None, ladder_message, api_visibility="private", concurrency_limit=None)
    gr.on([timer.tick, demo.load], poll_ladder, None, [ladder_chart, ladder_df, ladder_btn],
          api_visibility="private", concurrency_limit=None, show_progress="hidden")
    gr.on([attn_btn.click, attn_prompt.submit], show_attention, [attn_weights, attn_prompt], attn_image,
          api_name="attention", concurrency_limit=4)
    generating = gr.on([gen_btn.click, prompt.submit], generate, [weights_dd, prompt, max_new_tokens, temperature,
                                                                  top_k, top_p, gen_seed], [output, gen_stats],
                       api_name="generate", concurrency_limit=4)
    gen_stop.click(None, cancels=[generating], api_visibility="private")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=None, help="default: $GRADIO_SERVER_NAME or 127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT or 7860")
    parser.add_argument("--share", action="store_true", help="also make a public gradio.live link")
    args = parser.parse_args()
    demo.queue(default_concurrency_limit=4).launch(server_name=args.host, server_port=args.port, share=args.share,
                                                   css=CSS, max_file_size=f"{MAX_UPLOAD_MB}mb")


if __name__ == "__main__":
    main()
