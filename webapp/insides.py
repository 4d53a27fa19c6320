"""The Insides tab: what the lecture's tensors hold, for any weights: the affinities `wei` (attention), the
probabilities the next character is drawn from, and the characters' embedding map."""

from __future__ import annotations

import html
import json

import gradio as gr

from gpt.insides.attention import MAX_CHARS, attention_image, prompt_maps
from gpt.errors import GPTError
from gpt.sharing import weights
from gpt.insides.characters import CharacterMap, character_map, next_characters, start_map
from gpt.generation.sampling import Settings
from webapp.state import (LIVE, load_weights, optional_number, refresh_weights, refused, runner, weights_choices,
                          weights_folder)

MAX_PROMPT = 10_000  # characters a prompt may have here (the model reads only its last block_size of them)
SHOWN = {"\n": "⏎", " ": "␣"}  # newline and space, made visible
# the labels' size in the map's own units: larger where the map is drawn small (a phone), so they stay readable
MAP_STYLE = ".char-label { font-size: 15px } @media (max-width: 600px) { .char-label { font-size: 20px } }"
KINDS = {"vowel": "#dc2626", "consonant": "#2563eb", "punctuation": "#16a34a", "space or new line": "#9333ea"}
# a click on a bar appends its character to the prompt, which asks for the next distribution: sampling by hand
APPEND_JS = """
element.addEventListener('click', (event) => {
  const bar = event.target.closest('[data-code]');
  const box = document.querySelector('#insides-prompt textarea');
  if (!bar || !box) return;
  box.value += String.fromCodePoint(Number(bar.dataset.code));
  box.dispatchEvent(new Event('input', { bubbles: true }));
});
"""


def shown(ch: str) -> str:
    return SHOWN.get(ch, ch)


def settings_of(temperature, top_k, top_p) -> Settings:
    """The sampling settings as the Generate tab reads them: top-k 0 and top-p 1 are off; a GPTError says why a
    value cannot be used (NaN, out of range, not a number)."""
    def number(name, value, off):
        if value is None:
            return off
        try:
            return float(value)
        except (TypeError, ValueError):
            raise GPTError(f"{name} must be a number, not {value!r}") from None

    return Settings(temperature=number("temperature", temperature, 1.0),
                    top_k=optional_number("top_k", top_k) or None, top_p=number("top_p", top_p, 1.0))


def next_character_list(weights_name: str, prompt: str, temperature: float = 0.8, top_k: int = 40,
                        top_p: float = 1.0) -> list[dict]:
    """The ten most likely characters after prompt, with their probabilities: `softmax` (temperature 1, nothing cut)
    and `probability`, after temperature, top-k (0: off) and top-p (1: off) — the very distribution Generate's
    sampler draws from. An empty prompt is a new line, as in Generate."""
    try:
        if prompt is not None and not isinstance(prompt, str):
            raise GPTError(f"prompt must be text, not {type(prompt).__name__}")
        prompt = prompt or ""
        if len(prompt) > MAX_PROMPT:
            raise GPTError(f"the prompt has {len(prompt):,} characters; at most {MAX_PROMPT:,} here "
                           "(the model reads only its last block_size of them)")
        settings = settings_of(temperature, top_k, top_p)
        model = load_weights(weights_name)
        return [{"char": c.char, "softmax": c.softmax, "probability": c.probability}
                for c in next_characters(model, prompt, settings)]
    except (GPTError, ValueError, TypeError) as e:
        raise refused(e)


def bars_html(rows: list[dict], settings: Settings) -> str:
    """Two columns of bars, the plain softmax and the distribution after the settings; each bar a button."""
    def column(key: str, title: str) -> str:
        bars = []
        for r in rows:
            p = r[key]
            cut = key == "probability" and p == 0
            share = "cut" if cut else f"{100 * p:.1f}%" if p >= 0.001 else "<0.1%"
            bars.append(
                f'<button class="next-bar" data-code="{ord(r["char"])}" title="append {html.escape(repr(r["char"]))}"'
                ' style="display:flex;align-items:center;gap:8px;width:100%;border:0;background:none;padding:2px 0;'
                f'cursor:pointer;color:inherit;opacity:{0.45 if cut else 1}">'
                f'<code style="width:1.6em;text-align:center;font-size:1.05em">{html.escape(shown(r["char"]))}</code>'
                '<span style="flex:1;height:14px;background:var(--border-color-primary,#e5e7eb);border-radius:3px">'
                f'<span style="display:block;height:100%;width:{100 * p:.2f}%;border-radius:3px;'
                'background:var(--color-accent,#f97316)"></span></span>'
                f'<span style="width:3.6em;text-align:right;font-variant-numeric:tabular-nums">{share}</span></button>')
        return (f'<div style="flex:1 1 260px;min-width:0"><div style="font-weight:600;margin-bottom:4px">{title}</div>'
                + "".join(bars) + "</div>")

    after = (f"temperature {settings.temperature:g} · top-k {settings.top_k or 'off'} · "
             f"top-p {'off' if (settings.top_p or 1) >= 1 else f'{settings.top_p:g}'}")
    return ('<div id="next-bars-inner" style="display:flex;flex-wrap:wrap;gap:24px">'
            + column("softmax", "softmax(logits): temperature 1, nothing cut")
            + column("probability", f"what sample() draws from: {after}") + "</div>")


def show_next(weights_name, prompt, temperature, top_k, top_p) -> str:
    """The page's bars; a mistake (an unknown character, say) is said where the bars would be, not in a toast that
    fades while one types."""
    try:
        rows = next_character_list(weights_name, prompt, temperature, top_k, top_p)
        return bars_html(rows, settings_of(temperature, top_k, top_p))
    except gr.Error as e:
        return f"<div class='gen-error'>⚠ {html.escape(e.message)}</div>"


def kind(ch: str) -> str:
    if ch in "\n ":
        return "space or new line"
    if ch.isalpha():
        return "vowel" if ch.lower() in "aeiou" else "consonant"
    return "punctuation"


LABEL = 18  # a label's box in the map's units, for placing them apart (drawn at 15, or 20 on a phone)


def place_labels(points: list[tuple[float, float]], sizes: list[int]) -> list[tuple[float, float]]:
    """Where each label goes: on its point where that is free, else the nearest free spot around it (a thin line
    then joins the two), so that no two labels of a dense cluster are drawn over each other."""
    w, h = 0.62 * LABEL, 0.9 * LABEL  # a monospace character's box
    around = [(0.0, 0.0)] + [(r * dx, r * dy) for r in (1.0, 1.6, 2.3) for dx, dy in
                             ((0, -1), (1, 0), (0, 1), (-1, 0), (1, -1), (1, 1), (-1, 1), (-1, -1))]
    placed: list[tuple[float, float, float]] = []  # x, y, half width

    def free(x, y, half):
        return all(abs(x - px) >= half + ph or abs(y - py) >= h for px, py, ph in placed)

    spots = []
    for (x, y), n in zip(points, sizes):
        half = w * n / 2
        for dx, dy in around:
            spot = (x + dx * (half + w / 2), y + dy * h)
            if free(*spot, half):
                break
        else:
            spot = (x, y)  # nowhere free: on its point, as before
        placed.append((*spot, half))
        spots.append(spot)
    return spots


def map_svg(m: CharacterMap, width: int = 600, height: int = 460, pad: int = 22, title: str = "",
            caption: str = "") -> str:
    """The map as an SVG: one label per character, coloured by kind, the axes through the mean; hovering a label
    names its character and coordinates."""
    xs, ys = m.x, m.y
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0

    def at(x, y):
        return (pad + (x - min(xs)) / span_x * (width - 2 * pad),
                height - pad - (y - min(ys)) / span_y * (height - 2 * pad))  # up is positive

    ox, oy = at(0.0, 0.0)
    parts = [f'<line x1="{pad}" y1="{oy:.1f}" x2="{width - pad}" y2="{oy:.1f}" stroke="#9ca3af" stroke-width="0.6"/>',
             f'<line x1="{ox:.1f}" y1="{pad}" x2="{ox:.1f}" y2="{height - pad}" stroke="#9ca3af" stroke-width="0.6"/>']
    points = [at(x, y) for x, y in zip(xs, ys)]
    spots = place_labels(points, [len(shown(ch)) for ch in m.chars])
    for ch, x, y, (px, py), (lx, ly) in zip(m.chars, xs, ys, points, spots):
        color = KINDS[kind(ch)]
        bold = ' font-weight="bold"' if ch in SHOWN else ""  # the stand-ins for space and newline are thin
        moved = "" if (lx, ly) == (px, py) else (
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="1.8" fill="{color}"/>'
            f'<line x1="{px:.1f}" y1="{py:.1f}" x2="{lx:.1f}" y2="{ly:.1f}" stroke="{color}" stroke-width="0.5" '
            'opacity="0.6"/>')
        parts.append(f'<g><title>{html.escape(repr(ch))} ({kind(ch)}): {x:+.3f}, {y:+.3f}</title>{moved}'
                     f'<text class="char-label" x="{lx:.1f}" y="{ly:.1f}" fill="{color}"{bold} '
                     f'text-anchor="middle" dominant-baseline="central" font-family="monospace">'
                     f'{html.escape(shown(ch))}</text></g>')
    heading = f'<div style="font-weight:600">{title}</div>' if title else ""
    return (f'<div class="char-map-one" style="flex:1 1 340px;min-width:0">{heading}'
            f'<svg viewBox="0 0 {width} {height}" style="width:100%;max-width:{width * 5 // 4}px;height:auto" '
            f'role="img" aria-label="the characters\' embedding map{": " + title if title else ""}">{"".join(parts)}'
            f'</svg><div style="font-size:.85em;color:#6b7280">→ first principal component ({100 * m.explained[0]:.1f}% '
            f'of the table\'s variance) · ↑ second ({100 * m.explained[1]:.1f}%){caption}</div></div>')


def maps_html(end: CharacterMap, start: CharacterMap | None, why_not: str = "") -> str:
    """The map at the end, and beside it the map at step 0 (or one line saying why there is none)."""
    legend = " ".join(f'<span style="color:{color}">■ {name}</span>' for name, color in KINDS.items())
    if start is None:
        return (f'<div id="char-map-inner"><div style="font-size:.9em">{legend}</div>{map_svg(end)}'
                f'<div class="no-start" style="font-size:.9em">No map at step 0: {why_not}.</div></div>')
    closer = end.spread / start.spread if start.spread else 1.0
    return (f'<div id="char-map-inner"><div style="font-size:.9em">{legend} · hover a character for its '
            'coordinates</div><div style="display:flex;flex-wrap:wrap;gap:16px">'
            + map_svg(start, title="Step 0: the table the run began with",
                      caption=f" · both on the end map's axes · drawn {closer:.1f}× larger than the end's")
            + map_svg(end, title="The end: these weights") + "</div></div>")


def start_of(weights_name: str):
    """The token embedding table the run behind weights_name began with, or (None, why there is none)."""
    if weights_name == LIVE:
        trainer = runner.trainer
        folder = trainer.out_dir if trainer is not None else None
    else:
        folder = weights_folder(weights_name)
    table = weights.read_start_embedding(folder) if folder is not None else None
    if table is not None:
        return table, ""
    if weights_name == "default":
        return None, "the shipped weights were trained before runs kept their first table"
    return None, ("this folder keeps no table from step 0 (weights pulled from the Hub, uploaded, or trained before "
                  "runs kept it)")


def show_map(weights_name) -> str:
    try:
        model = load_weights(weights_name)
        start, why_not = start_of(weights_name)
        return maps_html(character_map(model), start_map(model, start) if start is not None else None, why_not)
    except (GPTError, ValueError) as e:
        return f"<div class='gen-error'>⚠ {html.escape(refused(e).message)}</div>"


def follow_view(weights_name, text, prompt, temperature, top_k, top_p) -> str:
    """The Generate tab's follow view of a text the server streams, as JSON for browser.js' showFollow: the
    distribution its newest character was drawn from, {"drawn", "rows": [{"char", "p"}]} most likely first. Computed
    again here, from the text before it and the copy of the weights the engine draws with (int8 where that is
    faster). Empty while nothing is generated, or where it cannot be computed (it says nothing then)."""
    prompt = prompt or ""
    if not isinstance(text, str) or len(text) <= len(prompt) or not text.startswith(prompt):
        return ""
    try:
        model = load_weights(weights_name, inference=True)  # already loaded: the stream asked for it
        rows = next_characters(model, text[:-1], settings_of(temperature, top_k, top_p), n=len(model.vocab))
    except (GPTError, ValueError, TypeError):
        return ""
    return json.dumps({"drawn": text[-1], "rows": [{"char": r.char, "p": r.probability} for r in rows
                                                    if r.probability > 0 or r.char == text[-1]]})


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
    """The Insides tab's components and events (call inside `with gr.Tab(...)`)."""
    gr.Markdown("### Inside the model\nThe lecture's tensors for one text and one set of weights: what each "
                "character attends to, what the next character is drawn from, and where training put each character.")
    choices = weights_choices()
    with gr.Row():
        weights = gr.Dropdown(choices, value=(choices or [None])[0], allow_custom_value=True, label="Weights",
                              scale=1, min_width=200, elem_id="insides-weights")  # min widths: a phone stacks them
        prompt = gr.Textbox(value="ROMEO:\nWhat light through yonder", label="Text", lines=2, scale=3, min_width=280,
                            max_length=MAX_PROMPT, elem_id="insides-prompt")

    gr.Markdown("#### The next character\n**The logits become probabilities**: `probs = F.softmax(logits, dim=-1)` "
                "for the last position, then `torch.multinomial` draws one. Left, the plain softmax; right, after "
                "temperature, top-k and top-p — what Generate's sampler really draws from. **Click a bar** to append "
                "its character: you are the multinomial.")
    with gr.Row():
        temperature = gr.Slider(0, 2, value=0.8, step=0.05, label="Temperature", info="0 = always the likeliest",
                                elem_id="insides-temperature")
        top_k = gr.Slider(0, 100, value=40, step=1, label="Top-k", info="0 = off")
        top_p = gr.Slider(0.05, 1, value=1.0, step=0.05, label="Top-p", info="1 = off")
    bars = gr.HTML(elem_id="next-bars", js_on_load=APPEND_JS)

    gr.Markdown("#### What attention looks at\n**The affinities `wei`**: `softmax(q·kᵀ / √head_size)`, the future "
                "masked. Each map shows, for every character (row), how much it attends to each earlier character "
                f"(column); the future is blank, because the mask hides it. The text's last {MAX_CHARS} characters.")
    with gr.Row():
        layer = gr.Number(1, label="Layer (0: all)", precision=0, minimum=0, scale=1)
        attn_btn = gr.Button("Show attention", scale=2)
    attn_image = gr.Image(label="Attention of each head (the full-screen button zooms in)", type="pil",
                          format="png", elem_id="attention-maps")

    gr.Markdown("#### The characters' map\n**The token embedding table**, `nn.Embedding(vocab_size, n_embd)`: one "
                "vector per character, projected onto its first two principal components. Nobody told the model "
                "what a vowel is; training put characters that behave alike near each other. Beside it, where the run "
                "kept it, the table at step 0, random, on the same two axes: what training did.")
    char_map = gr.HTML(elem_id="char-map", css_template=MAP_STYLE)

    inputs = [weights, prompt, temperature, top_k, top_p]
    tab.select(refresh_weights, weights, weights, api_visibility="private", concurrency_limit=None,
               show_progress="hidden").then(show_next, inputs, bars, api_visibility="private", show_progress="hidden"
                                            ).then(show_map, weights, char_map, api_visibility="private",
                                                   show_progress="hidden")
    weights.input(show_map, weights, char_map, api_visibility="private", show_progress="hidden")
    gr.on([weights.input, prompt.change, temperature.change, top_k.change, top_p.change], show_next, inputs, bars,
          api_visibility="private", trigger_mode="always_last", show_progress="hidden")
    attn_btn.click(show_attention, [weights, prompt, layer], attn_image, api_name="attention", concurrency_limit=4)
    gr.api(next_character_list, api_name="next_characters", concurrency_limit=4)
