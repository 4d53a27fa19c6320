"""The model card (README.md) and loss curve (loss_curve.png) written beside the weights and pushed to the Hub.

Both are built from the run's own log, metrics.jsonl: its settings, device, evaluations and per-step losses.
"""

from __future__ import annotations

import io
import json

from huggingface_hub import EvalResult, ModelCardData
from PIL import Image, ImageDraw

from gpt.config import GPTConfig
from gpt.model import param_count
from gpt.training.presets import LECTURE_VAL
from gpt.training.log import empty_log
from gpt.sharing.weights import CARD_FILE

CURVE_FILE = "loss_curve.png"
DATASET = "karpathy/tiny_shakespeare"
DISTRIBUTION = "gpt-from-scratch-lecture"  # pyproject.toml's name
REPOSITORY = "https://github.com/gpt-from-scratch/gpt-from-scratch-lecture"  # where the project is published
INSTALL = f'pip install "{DISTRIBUTION} @ git+{REPOSITORY}"'  # the card's install command: the package, torch 2.13
# the loss curve's colours, here and in the app's live chart
COLORS = {"train (each batch)": "#c7d2fe", "train": "#4f46e5", "val": "#f97316", "lecture": "#9ca3af"}


def params_text(n: int) -> str:
    """A parameter count for people: 10.79M, 30.1K (a bigram's 4,225 is not "0.00M")."""
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K" if n >= 1e3 else str(n)


def best_eval(log: dict) -> dict | None:
    """The evaluation whose weights were saved last (the best so far)."""
    saved = [e for e in log["evals"] if e.get("saved")]
    return saved[-1] if saved else None


def card_metadata(val_loss: float | None, shakespeare: bool, name: str, exported: bool = False) -> ModelCardData:
    results = None
    if val_loss is not None:
        results = [EvalResult(task_type="text-generation", dataset_type=DATASET if shakespeare else "custom",
                              dataset_name="Tiny Shakespeare" if shakespeare else "the training text",
                              dataset_split="validation", metric_type="loss", metric_value=round(val_loss, 4),
                              metric_name="validation loss (cross-entropy per character)")]
    return ModelCardData(library_name="gpt-from-scratch", license="mit", pipeline_tag="text-generation",
                         tags=["gpt-from-scratch", "character-level", "text-generation", "nanogpt"]
                         + (["gpt2", "transformers", "transformers.js", "onnx"] if exported else []),
                         datasets=[DATASET] if shakespeare else None, model_name=name, eval_results=results)


def ecosystem_section(config: GPTConfig, name: str) -> str:
    """How to use an exported repo (gpt.export) with transformers, transformers.js and onnxruntime, no code of ours."""
    return f"""## In transformers, transformers.js and onnxruntime

The repo is also a GPT-2 (ReLU, untied embeddings) with a character-level `tokenizer.json`, so the usual
libraries load it as they are, without this project. GPT-2 has no position past `block_size`: the prompt and the
new characters together are at most {config.block_size}. A character outside the vocabulary is left out by
`tokenizer.json` (this project's own tokenizer refuses it and names it).

[transformers](https://huggingface.co/docs/transformers) (`pip install transformers torch`):

```python
from transformers import pipeline

generate = pipeline("text-generation", model="{name}")
print(generate("ROMEO:", max_new_tokens=100, do_sample=True, temperature=0.8, top_k=40)[0]["generated_text"])
```

[transformers.js](https://huggingface.co/docs/transformers.js) (`npm install @huggingface/transformers`), in Node
or a web page; `dtype: "q8"` reads `onnx/model_quantized.onnx` (int8 weights, a quarter of the size), `"fp32"`
reads `onnx/model.onnx`:

```js
import {{ pipeline }} from "@huggingface/transformers";

const generate = await pipeline("text-generation", "{name}", {{ dtype: "q8" }});
const [out] = await generate("ROMEO:", {{ max_new_tokens: 100, do_sample: true, temperature: 0.8, top_k: 40 }});
console.log(out.generated_text);
```

[onnxruntime](https://onnxruntime.ai) alone (`pip install onnxruntime numpy huggingface_hub`), greedy, with the
KV cache the graph takes and gives back:

```python
import json

import numpy as np
import onnxruntime
from huggingface_hub import hf_hub_download

config = json.load(open(hf_hub_download("{name}", "config.json"), encoding="utf-8"))
session = onnxruntime.InferenceSession(hf_hub_download("{name}", "onnx/model.onnx"))
stoi = {{c: i for i, c in enumerate(config["vocab"])}}
head = (1, config["n_head"], 0, config["n_embd"] // config["n_head"])
past = {{f"past_key_values.{{i}}.{{kv}}": np.zeros(head, np.float32)
        for i in range(config["n_layer"]) for kv in ("key", "value")}}
tokens = [stoi[c] for c in "ROMEO:"]
new, seen = tokens, 0
for _ in range(100):
    ids = np.array([new], np.int64)
    mask, positions = np.ones((1, seen + len(new)), np.int64), np.arange(seen, seen + len(new), dtype=np.int64)[None]
    logits, *present = session.run(None, {{"input_ids": ids, "attention_mask": mask, "position_ids": positions, **past}})
    past, seen = dict(zip(past, present)), seen + len(new)
    new = [int(logits[0, -1].argmax())]
    tokens += new
print("".join(config["vocab"][i] for i in tokens))
```
"""


def model_card(config: GPTConfig, vocab: list[str], log: dict | None, name: str, exported: bool = False) -> str:
    """README.md for a weights folder or Hub repo `name` (what GPT.from_pretrained is given), from its run's log.

    exported: the repo also holds gpt.export's files, and the card says how transformers and ONNX use them."""
    log = log or empty_log()
    params = log["params"] or param_count(config)
    best = best_eval(log)
    settings = log["config"]
    shakespeare = settings.get("data", "shakespeare") == "shakespeare"
    meta = card_metadata(best["val_loss"] if best else None, shakespeare, name, exported)
    text = "Tiny Shakespeare (1.1M characters; 90% train, 10% validation)" if shakespeare else "the user's own text"
    started = f"Started from the weights of {log['init_from']} (fine-tuned). " if log.get("init_from") else ""
    headline = (f"**Validation loss {best['val_loss']:.4f}** (train {best['train_loss']:.4f}), cross-entropy per "
                f"character; the lecture's model reaches {LECTURE_VAL}." if best else "")
    sections = [f"""---
{meta.to_yaml()}
---

# {name}: a character-level GPT built from scratch

The decoder-only transformer of Andrej Karpathy's lecture "Let's build GPT: from scratch, in code, spelled out",
reading and writing one character at a time: {config.n_layer} layers, {config.n_head} heads, {config.n_embd} channels,
a context of {config.block_size} characters, {params_text(params)} parameters. {started}Trained on {text}.

{headline}

## Use it

Install the `gpt` package of the project that made it (Python 3.10+; it brings torch 2.13.0):

```bash
{INSTALL}
```

then:

```python
from gpt import GPT
from gpt.generation.decode import stream_text

model = GPT.from_pretrained("{name}")
for ch in stream_text(model, "ROMEO:", max_new_tokens=300, temperature=0.8, top_k=40, seed=1):
    print(ch, end="", flush=True)
```

or `gpt-generate --weights {name} --prompt "ROMEO:"` (also `python -m gpt.generate`), or pick it in the app
(`gpt-app`).
"""]
    if exported:
        sections.append(ecosystem_section(config, name))
    if best and best.get("sample"):
        sections.append(f"## A sample\n\nWhat it wrote at step {best['step']:,} (temperature 1, no prompt):\n\n"
                        f"```text\n{best['sample'].strip()}\n```\n")
    vocab_shown = json.dumps("".join(vocab), ensure_ascii=False)
    exported_files = ("; for transformers also `generation_config.json`, `tokenizer.json` and `tokenizer_config.json`"
                      ", and `onnx/model.onnx` and `onnx/model_quantized.onnx` for ONNX" if exported else "")
    sections.append(f"""## The model

| | |
|---|---|
| architecture | token + position embeddings, {config.n_layer} x (LayerNorm, multi-head self-attention, LayerNorm, feed-forward), LayerNorm, linear head |
| layers / heads / channels | {config.n_layer} / {config.n_head} / {config.n_embd} (head size {config.head_size}) |
| context (block_size) | {config.block_size} characters |
| parameters | {params:,} |
| vocabulary | {config.vocab_size} characters: {vocab_shown} |
| dropout / bias | {config.dropout} / {config.bias} |

Files: `model.safetensors` (weights), `config.json` (these settings and the vocabulary), this card{exported_files}.
""")
    if best:
        steps = f"{best['step']:,} steps, {best['elapsed']:.0f} s" + (f" on {log['device']}" if log["device"] else "")
        sections.append(f"## How it was trained\n\n{steps}; these weights are from the evaluation with the lowest "
                        f"validation loss.\n")
        if has_curve(log):
            sections.append(f"![Loss curve: train and validation loss against steps]({CURVE_FILE})\n")
    if log["command"]:
        sections.append(f"Made with:\n\n```bash\n{log['command']}\n```\n")
    if settings:
        rows = "\n".join(f"| {k} | {v} |" for k, v in settings.items())
        sections.append(f"| setting | value |\n|---|---|\n{rows}\n")
    return "\n".join(sections)


def card_files(config: GPTConfig, vocab: list[str], log: dict | None, name: str, exported: bool = False
               ) -> dict[str, bytes]:
    """The card (README.md), and the loss curve it shows when the run evaluated more than once."""
    files = {CARD_FILE: model_card(config, vocab, log, name, exported).encode()}
    if has_curve(log):
        files[CURVE_FILE] = loss_curve_png(log)
    return files


def has_curve(log: dict | None) -> bool:
    """A loss curve is worth drawing (and the card shows it) once the run has evaluated more than once."""
    return log is not None and len(log["evals"]) > 1


def loss_curve_png(log: dict, size: tuple[int, int] = (800, 400)) -> bytes:
    """The loss curve as a PNG: per-step train loss (light), train and val at each eval, the lecture's 1.48."""
    evals = log["evals"]
    series = [("train (each batch)", COLORS["train (each batch)"], log["steps"]),
              ("train", COLORS["train"], [(e["step"], e["train_loss"]) for e in evals]),
              ("val", COLORS["val"], [(e["step"], e["val_loss"]) for e in evals])]
    return line_chart_png(series, x_label="step", levels=[(LECTURE_VAL, f"lecture: {LECTURE_VAL}")], size=size)


def line_chart_png(series: list[tuple[str, str, list]], *, x_label: str, title: str = "",
                   levels: list[tuple[float, str]] = (), size: tuple[int, int] = (800, 400)) -> bytes:
    """A PNG line chart of (label, colour, [(x, y), ...]) series with level lines (y, label): PIL, no matplotlib."""
    W, H = size
    left, right, top, bottom = 60, 20, 30 + (20 if title else 0), 40
    xs = [x for _, _, pts in series for x, _ in pts] or [0]
    ys = [y for _, _, pts in series for _, y in pts] + [y for y, _ in levels]
    x_max = max(max(xs), 1)
    lo, hi = min(ys) - 0.05, max(ys) + 0.05
    x = lambda value: left + (W - left - right) * value / x_max  # noqa: E731
    y = lambda value: top + (H - top - bottom) * (hi - value) / (hi - lo)  # noqa: E731
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([left, top, W - right, H - bottom], outline="#9ca3af")
    for i in range(6):  # value and x ticks
        value = lo + (hi - lo) * i / 5
        draw.text((5, y(value) - 6), f"{value:.2f}", fill="#374151")
        draw.line([left, y(value), W - right, y(value)], fill="#f3f4f6")
        draw.text((x(x_max * i / 5) - 10, H - bottom + 8), f"{x_max * i / 5:,.0f}", fill="#374151")
    draw.text((W // 2 - 4 * len(x_label), H - 16), x_label, fill="#374151")
    if title:
        draw.text((left, 8), title, fill="#111827")
    for value, label in levels:
        draw.line([left, y(value), W - right, y(value)], fill="#9ca3af", width=1)
        draw.text((W - right - 8 * len(label) - 10, y(value) - 14), label, fill="#6b7280")
    for i, (label, colour, pts) in enumerate(series):
        if len(pts) > 1:
            draw.line([(x(a), y(b)) for a, b in pts], fill=colour, width=2)
        for a, b in pts if len(pts) < 50 else []:
            draw.ellipse([x(a) - 3, y(b) - 3, x(a) + 3, y(b) + 3], fill=colour)
        legend = top - 22
        draw.rectangle([left + 10 + 150 * i, legend, left + 22 + 150 * i, legend + 12], fill=colour)
        draw.text((left + 28 + 150 * i, legend), label, fill="#111827")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
