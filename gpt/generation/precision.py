"""The precision generation runs in: int8 or bfloat16 copies of the weights where that is faster, else float32.

inference_model() gives the copy to generate with; serving_dtype() is the fixed choice a server makes for saved
weights; fastest_precision() measures (once per machine and model shape, remembered in a file).
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import torch
import torch.nn as nn

from gpt.generation.decode import generate_tokens
from gpt.device import cpu_name, fast_bf16
from gpt.errors import SamplingError
from gpt.generation.int8 import Int8Linear
from gpt.model import GPTLanguageModel

DTYPES = ("auto", "float32", "bfloat16", "int8")


def precision(model: nn.Module) -> str:
    """How a model's weights are stored: "int8", "bfloat16" or "float32"."""
    if any(isinstance(m, Int8Linear) for m in model.modules()):
        return "int8"
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def inference_model(model: nn.Module, dtype: str = "auto") -> nn.Module:
    """The model to generate with: a faster copy (int8 or bfloat16 weights), or the model itself (float32).

    dtype "auto" takes the precision fastest_precision() measured for this machine and this model's shape
    (int8 or bfloat16 only where the hardware has native bf16, and only when faster than float32).
    The copy takes milliseconds and leaves the original untouched, so it can be made for every request.
    """
    if dtype not in DTYPES:
        raise SamplingError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if dtype == "auto":
        dtype = fastest_precision(model)
    return precision_copy(model, dtype)


_FASTEST: dict[tuple, tuple[str, dict]] = {}  # (device, model shape) -> (choice, seconds): this process's


def precisions_file() -> Path:
    """Where fastest_precision() remembers its choices: $GPT_CACHE_DIR, else $XDG_CACHE_HOME/gpt-from-scratch."""
    root = os.environ.get("GPT_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") \
        / "gpt-from-scratch"
    return Path(root) / "precisions.json"


def _machine(device: torch.device) -> str:
    """What the choice depends on besides the model: the processor, its threads, torch."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{cpu_name()}, {torch.get_num_threads()} threads"
    return f"{device.type}: {name}, torch {torch.__version__}"


def fastest_precision(model: nn.Module) -> str:
    """The precision that generates fastest here: measured once per machine and model shape, then remembered
    (in this process, and in precisions_file() for the next ones: a seed then gives the same text every time).

    Which one wins depends on the machine and the model (int8 weights beat float32 at the lecture's size on a
    CPU with AMX, and lose at a small one), so it is timed, not guessed: 16 tokens with the KV cache for each
    candidate, best of two after a warm-up, well under a second on an idle machine. float32 wins unless another is
    10% faster.
    """
    if precision(model) != "float32" or not isinstance(model, GPTLanguageModel):
        return "float32"
    device = next(model.parameters()).device
    if not fast_bf16(device):  # emulated bf16 is always slower: nothing to measure
        return "float32"
    key = (str(device), tuple(sorted(vars(model.config).items())))
    if key not in _FASTEST:
        stored = f"{_machine(device)}; {dict(key[1])}"
        remembered = _read_precisions().get(stored)
        if remembered:
            _FASTEST[key] = (remembered["choice"], remembered["seconds"])
        else:
            candidates = ["float32", "bfloat16"] + (["int8"] if device.type == "cpu" else [])
            seconds = {name: _time_generation(precision_copy(model, name)) for name in candidates}
            best = min(seconds, key=seconds.get)
            _FASTEST[key] = (best if seconds[best] < 0.9 * seconds["float32"] else "float32", seconds)
            _write_precision(stored, *_FASTEST[key])
    return _FASTEST[key][0]


def _read_precisions() -> dict:
    try:
        stored = json.loads(precisions_file().read_text())
        return {k: v for k, v in stored.items() if isinstance(v, dict) and v.get("choice") in DTYPES[1:]}
    except (OSError, ValueError, AttributeError):
        return {}  # none yet, unreadable or torn: measure again


def _write_precision(key: str, choice: str, seconds: dict) -> None:
    """Add a choice to the file (written whole, then renamed: a reader never sees half of it); best effort."""
    path = precisions_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        stored = {**_read_precisions(), key: {"choice": choice, "seconds": seconds}}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(stored, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: the choice is remembered in this process only


def measured_precisions() -> dict[tuple, tuple[str, dict[str, float]]]:
    """What fastest_precision() measured or read in this process: (device, shape) -> (choice, seconds each)."""
    return dict(_FASTEST)


def _time_generation(model: nn.Module, tokens: int = 16) -> float:
    """Best of two timed runs of `tokens` cached decoding steps, after one to warm up."""
    device = next(model.parameters()).device
    idx = torch.zeros((1, 1), dtype=torch.long, device=device)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        for token in generate_tokens(model, idx, tokens, seed=0):
            pass
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return min(times[1:])


def precision_copy(model: nn.Module, dtype: str) -> nn.Module:
    """model with its weights in dtype ("float32": the model itself; a model already not float32 is kept)."""
    device = next(model.parameters()).device
    if dtype == "float32" or precision(model) != "float32":
        return model
    fast = copy.deepcopy(model).to(torch.bfloat16)
    if dtype == "int8" and device.type == "cpu":
        for module in list(fast.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, nn.Linear) and Int8Linear.fits(child):
                    setattr(module, name, Int8Linear(child))
    return fast


def serving_dtype(model: nn.Module) -> str:
    """The precision a server generates with: int8 weights (CPU) or bf16 (CUDA) where bf16 is native, else float32.

    Not measured like "auto": a seeded text must not depend on a timing, and in these precisions the rows of a
    crowd's batch share their matmuls exactly (gpt.generation.engine)."""
    device = next(model.parameters()).device
    if not fast_bf16(device):
        return "float32"
    return "int8" if device.type == "cpu" else "bfloat16"
