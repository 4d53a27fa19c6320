"""What attention looks at: the lecture's `wei` (softmax of q·k / sqrt(head_size), future masked) per layer and head."""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw

from gpt.model import GPT
from gpt.tokenizer import CharTokenizer

MAX_CHARS = 64  # longer prompts are cut to their last 64 characters, so each map stays readable


@torch.no_grad()
def attention_maps(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """(1, T) token ids -> (n_layer, n_head, T, T): row t is how position t spreads its attention over 0..t."""
    model.eval()
    B, T = idx.shape
    nh, hs = model.config.n_head, model.config.head_size
    x = model.token_embedding_table(idx) + model.position_embedding_table(torch.arange(T, device=idx.device))
    future = torch.ones(T, T, dtype=torch.bool, device=idx.device).triu(diagonal=1)
    maps = []
    for block in model.blocks:
        q, k, _ = block.sa.qkv(block.ln1(x)).split(model.config.n_embd, dim=2)  # each (B, T, C)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        wei = (q @ k.transpose(-2, -1)) * hs**-0.5  # (B, nh, T, T)
        maps.append(wei.masked_fill(future, float("-inf")).softmax(dim=-1)[0])  # (nh, T, T)
        x = block(x)
    return torch.stack(maps)  # (n_layer, n_head, T, T)


def prompt_maps(model: GPT, prompt: str) -> tuple[torch.Tensor, str]:
    """Attention maps of the last MAX_CHARS characters of prompt (unknown characters raise a clear error)."""
    text = (prompt or "\n")[-min(MAX_CHARS, model.config.block_size):]
    ids = CharTokenizer(model.vocab).encode(text)
    device = next(model.parameters()).device
    return attention_maps(model, torch.tensor([ids], device=device)), text


def attention_image(maps: torch.Tensor, text: str) -> Image.Image:
    """A grid of heatmaps, a row per layer and a column per head; dark = much attention, blank = the future."""
    L, H, T, _ = maps.shape
    cell = max(4, min(14, 448 // T))  # pixels per character
    labels = cell >= 9  # room to write the characters along the axes
    margin = 12 if labels else 0
    size = T * cell + margin
    pad, title = 14, 16
    image = Image.new("RGB", (H * (size + pad) + pad, L * (size + title + pad) + pad), "white")
    draw = ImageDraw.Draw(image)
    shown = ["_" if c == " " else "|" if c == "\n" else c for c in text]  # visible stand-ins for whitespace
    for layer in range(L):
        for head in range(H):
            left = pad + head * (size + pad)
            top = pad + layer * (size + title + pad) + title
            draw.text((left, top - title + 2), f"layer {layer + 1} · head {head + 1}", fill="black")
            w = maps[layer, head].float().cpu()
            for i in range(T):
                for j in range(i + 1):  # only the past and the present: the upper triangle stays empty
                    shade = int(255 * (1 - float(w[i, j]) ** 0.5))  # sqrt: faint attention still shows
                    x0, y0 = left + margin + j * cell, top + margin + i * cell
                    draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=(shade, shade, 255))
            draw.rectangle([left + margin, top + margin, left + size - 1, top + size - 1], outline="#d1d5db")
            if labels:
                for t, ch in enumerate(shown):
                    draw.text((left + margin + t * cell + 1, top), ch, fill="#374151")  # keys, along the top
                    draw.text((left + 1, top + margin + t * cell), ch, fill="#374151")  # queries, down the side
    return image
