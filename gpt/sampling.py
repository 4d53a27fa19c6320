"""Generation: sample one character at a time, streaming, with a KV cache.

The prompt is encoded once (prefill); each later step feeds only the newest token. Positions are learned only
up to block_size, so when the window is full the cache is rebuilt from the most recent `rebuild` tokens
(default block_size // 2) and generation goes on: the context then grows again from rebuild to block_size.
rebuild=block_size re-encodes the full window at every step: exactly the lecture's `idx[:, -block_size:]`.

inference_model() gives the copy to generate with: bfloat16 where the hardware makes it fast, else the model itself.
"""

from __future__ import annotations

import copy
from typing import Iterator

import torch
import torch.nn as nn
from torch.nn import functional as F

from gpt.device import fast_bf16
from gpt.errors import SamplingError
from gpt.model import GPT, KVCache
from gpt.tokenizer import CharTokenizer


def check_settings(max_new_tokens, temperature, top_k, top_p, num_samples=1):
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise SamplingError(f"max_new_tokens must be a whole number of 0 or more, not {max_new_tokens!r}")
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 100:
        raise SamplingError(f"temperature must be between 0 (greedy) and 100, not {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 0):
        raise SamplingError(f"top_k must be a whole number (0 or empty = off), not {top_k!r}")
    if top_p is not None and (not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise SamplingError(f"top_p must be above 0 and at most 1 (1 = off), not {top_p!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise SamplingError(f"num_samples must be a whole number of at least 1, not {num_samples!r}")


DTYPES = ("auto", "float32", "bfloat16")
# Below this size the float32 weights stay in the CPU's caches and bf16 only adds conversions. Measured batch-1
# tokens/s, bf16 over float32, on 2 AVX512-BF16 cores (6 layers): 0.79x at 2.7M parameters, 1.23x at 4.8M,
# 1.73x at 10.8M (the lecture's size), 2.04x at 19M.
BF16_MIN_PARAMS = 4_000_000


def inference_model(model: nn.Module, dtype: str = "auto") -> nn.Module:
    """The model to generate with: a bfloat16 copy, or the model itself (unchanged) for full precision.

    Generating one sequence reads every weight once per new token, so halving the bytes nearly doubles the
    speed of a model too big for the CPU's caches. dtype "auto" takes bfloat16 where gpt.device.fast_bf16 says
    the hardware has it natively (CUDA, CPUs with AVX512-BF16 or AMX) and the model has BF16_MIN_PARAMS or more;
    "bfloat16" always; "float32" never. The copy takes milliseconds and leaves the original untouched, so it can
    be made for every request.
    """
    if dtype not in DTYPES:
        raise SamplingError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    param = next(model.parameters())
    big = sum(p.numel() for p in model.parameters()) >= BF16_MIN_PARAMS
    if dtype == "float32" or (dtype == "auto" and not (big and fast_bf16(param.device))) \
            or param.dtype == torch.bfloat16:
        return model
    return copy.deepcopy(model).to(torch.bfloat16)


def sample_next(logits, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                generator: torch.Generator | None = None):
    """(B, vocab_size) logits -> (B,) next token ids."""
    if temperature == 0:
        return logits.argmax(dim=-1)  # greedy
    logits = logits.float() / temperature
    if top_k:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))  # clamped: top_k above vocab_size means all
        logits = logits.masked_fill(logits < v[:, [-1]], float("-inf"))
    probs = F.softmax(logits, dim=-1)  # (B, vocab_size)
    if top_p is not None and top_p < 1:
        # nucleus: keep the smallest set of most likely tokens whose probabilities add up to top_p
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p  # the most likely token is always kept
        probs = probs.scatter(-1, order, sorted_probs.masked_fill(drop, 0.0))
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)  # (B,)


def generate_tokens(model: GPT, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
                    top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                    rebuild: int | None = None) -> Iterator[torch.Tensor]:
    """Yield the next token of every row of idx (B, T), shape (B,), max_new_tokens times.

    seed drives a private torch.Generator: the global RNG is never touched.
    """
    check_settings(max_new_tokens, temperature, top_k, top_p)
    block_size = model.config.block_size
    rebuild = block_size // 2 if rebuild is None else rebuild
    if not 1 <= rebuild <= block_size:
        raise SamplingError(f"rebuild must be between 1 and block_size ({block_size}), not {rebuild}")
    return _generate(model, idx, max_new_tokens, temperature, top_k, top_p, seed, rebuild)


@torch.inference_mode()
def _generate(model: nn.Module, idx, max_new_tokens, temperature, top_k, top_p, seed, rebuild):
    block_size = model.config.block_size
    device = idx.device
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    # the lecture ladder's early models have no cache: they recompute the window, as the lecture's generate does
    cache = KVCache(model.config, idx.size(0), device, next(model.parameters()).dtype) if isinstance(model, GPT) \
        else None
    context = idx[:, -block_size:]  # (B, T) the most the model can look back on
    logits, _ = model(context, cache=cache) if cache is not None else model(context)  # prefill: the whole prompt in one pass
    for i in range(max_new_tokens):
        idx_next = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)  # (B,)
        yield idx_next
        if i == max_new_tokens - 1:
            break
        context = torch.cat((context, idx_next[:, None]), dim=1)[:, -block_size:]  # (B, <=block_size)
        if cache is None:
            logits, _ = model(context)
        elif cache.pos == block_size:  # window full: no position block_size exists, re-encode recent context
            cache.pos = 0
            logits, _ = model(context[:, -rebuild:], cache=cache)
        else:
            logits, _ = model(idx_next[:, None], cache=cache)  # one new position


def _prompt_ids(tokenizer: CharTokenizer, prompt: str) -> list[int]:
    if prompt:
        return tokenizer.encode(prompt)
    # empty prompt: start from a newline, as the lecture does (id 0 is '\n' in Tiny Shakespeare)
    return [tokenizer.stoi.get("\n", 0)]


def _tokenizer(model: GPT, tokenizer: CharTokenizer | None) -> CharTokenizer:
    if tokenizer is not None:
        return tokenizer
    if model.vocab is None:
        raise SamplingError("this model has no vocabulary attached; pass tokenizer=CharTokenizer(...)")
    return CharTokenizer(model.vocab)


def stream_text(model: GPT, prompt: str = "", *, max_new_tokens: int = 500, tokenizer: CharTokenizer | None = None,
                **sampling) -> Iterator[str]:
    """Yield the generated text one character at a time (the prompt itself is not repeated)."""
    tokenizer = _tokenizer(model, tokenizer)
    device = next(model.parameters()).device
    idx = torch.tensor([_prompt_ids(tokenizer, prompt)], dtype=torch.long, device=device)  # (1, T)
    # settings and prompt are checked here, before the first character is asked for
    return (tokenizer.itos[int(t[0])] for t in generate_tokens(model, idx, max_new_tokens, **sampling))


def generate_text(model: GPT, prompt: str = "", *, num_samples: int = 1, max_new_tokens: int = 500,
                  tokenizer: CharTokenizer | None = None, **sampling) -> list[str]:
    """num_samples continuations of prompt, generated together as one batch."""
    check_settings(max_new_tokens, sampling.get("temperature", 1.0), sampling.get("top_k"), sampling.get("top_p"),
                   num_samples)
    tokenizer = _tokenizer(model, tokenizer)
    device = next(model.parameters()).device
    idx = torch.tensor([_prompt_ids(tokenizer, prompt)] * num_samples, dtype=torch.long, device=device)
    steps = list(generate_tokens(model, idx, max_new_tokens, **sampling))
    if not steps:
        return [""] * num_samples
    out = torch.stack(steps, dim=1)  # (B, max_new_tokens)
    return [tokenizer.decode(row.tolist()) for row in out]
