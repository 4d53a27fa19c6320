"""What attention looks at: the lecture's `wei` (softmax of q·k / sqrt(head_size), future masked) per layer and head."""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw, ImageFont

from gpt.model import GPTLanguageModel
from gpt.tokenizer import CharTokenizer

MAX_CHARS = 64  # longer prompts are cut to their last 64 characters, so each map stays readable


@torch.no_grad()
def attention_maps(model: GPTLanguageModel, idx: torch.Tensor) -> torch.Tensor:
    """(1, T) token ids -> (n_layer, n_head, T, T): row t is how position t spreads its attention over 0..t.

    The maps come from the model's own forward pass: each MultiHeadAttention keeps its `wei` while we look.
    """
    model.eval()
    layers = [block.sa for block in model.blocks]
    for sa in layers:
        sa.keep_wei = True
    try:
        model(idx)
        return torch.stack([sa.wei[0] for sa in layers])  # (n_layer, n_head, T, T)
    finally:
        for sa in layers:
            sa.keep_wei, sa.wei = False, None


def prompt_maps(model: GPTLanguageModel, prompt: str) -> tuple[torch.Tensor, str]:
    """Attention maps of the last MAX_CHARS characters of prompt (unknown characters raise a clear error)."""
    text = (prompt or "\n")[-min(MAX_CHARS, model.config.block_size):]
    ids = CharTokenizer(model.vocab).encode(text)
    device = next(model.parameters()).device
    return attention_maps(model, torch.tensor([ids], device=device)), text


def attention_image(maps: torch.Tensor, text: str, layer: int = 0) -> Image.Image:
    """A grid of heatmaps, a row per layer and a column per head (layer N > 0: that layer's heads alone, three to
    a row, drawn larger); dark = much attention, blank = the future."""
    L, H, T, _ = maps.shape
    if not 0 <= layer <= L:
        raise ValueError(f"layer must be 0 (all) or 1 to {L}, not {layer}")
    cells = [(l, h) for l in ([layer - 1] if layer else range(L)) for h in range(H)]
    columns = min(H, 3) if layer else H
    cell = max(6, min(32, (720 if layer else 480) // T))  # pixels per character
    labels = cell >= 9  # room to write the characters along the axes
    font = ImageFont.load_default(size=max(8, cell - 3))
    margin = cell + 2 if labels else 0
    size = T * cell + margin
    pad, title = 16, 22
    rows = -(-len(cells) // columns)
    image = Image.new("RGB", (columns * (size + pad) + pad, rows * (size + title + pad) + pad), "white")
    draw = ImageDraw.Draw(image)
    heading = ImageFont.load_default(size=15)
    shown = ["_" if c == " " else "|" if c == "\n" else c for c in text]  # visible stand-ins for whitespace
    for k, (l, h) in enumerate(cells):
        left = pad + (k % columns) * (size + pad)
        top = pad + (k // columns) * (size + title + pad) + title
        draw.text((left, top - title + 2), f"layer {l + 1} · head {h + 1}", fill="black", font=heading)
        w = maps[l, h].float().cpu()
        for i in range(T):
            for j in range(i + 1):  # only the past and the present: the upper triangle stays empty
                shade = int(255 * (1 - float(w[i, j]) ** 0.5))  # sqrt: faint attention still shows
                x0, y0 = left + margin + j * cell, top + margin + i * cell
                draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=(shade, shade, 255))
        draw.rectangle([left + margin, top + margin, left + size - 1, top + size - 1], outline="#d1d5db")
        if labels:
            for t, ch in enumerate(shown):
                draw.text((left + margin + t * cell + cell // 2, top + margin // 2), ch, fill="#374151", font=font,
                          anchor="mm")  # keys, along the top
                draw.text((left + margin // 2, top + margin + t * cell + cell // 2), ch, fill="#374151", font=font,
                          anchor="mm")  # queries, down the side
    return image
