"""The model card (README.md) written beside the weights: what the model is and how it was trained."""

from __future__ import annotations

from dataclasses import asdict

from huggingface_hub import ModelCardData

from gpt.model import GPT


def model_card(model: GPT, train_config, *, step: int, train_loss: float, val_loss: float, elapsed: float,
               device: str) -> str:
    c = model.config
    meta = ModelCardData(library_name="gpt-from-scratch", license="mit", pipeline_tag="text-generation",
                         tags=["gpt-from-scratch", "character-level", "text-generation"])
    settings = "\n".join(f"| {k} | {v} |" for k, v in asdict(train_config).items())
    return f"""---
{meta.to_yaml()}
---

# A character-level GPT built from scratch

The decoder-only transformer of Andrej Karpathy's lecture "Let's build GPT: from scratch, in code, spelled out":
{c.n_layer} layers, {c.n_head} heads, {c.n_embd} channels, context of {c.block_size} characters,
{model.num_params() / 1e6:.2f}M parameters, a vocabulary of {c.vocab_size} characters.

**Validation loss {val_loss:.4f}** (train {train_loss:.4f}) after {step} steps, {elapsed:.0f} s on {device}.

## Use it

```python
from gpt import GPT
from gpt.sampling import stream_text

model = GPT.from_pretrained("path/or/user-repo")
for ch in stream_text(model, "ROMEO:", max_new_tokens=300, temperature=0.8, top_k=40, seed=1):
    print(ch, end="", flush=True)
```

## Training settings

| setting | value |
|---|---|
{settings}
"""
