"""Where to run: the best device this machine has (cuda > mps > cpu), or the one asked for."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from gpt.errors import DeviceError


def pick_device(requested: str | None = "auto") -> torch.device:
    if requested in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise DeviceError(f"{requested!r} is not a device name; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was requested but this machine has no CUDA GPU visible to PyTorch")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise DeviceError(f"{requested} was requested but this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("Apple MPS was requested but is not available on this machine")
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"{requested!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    return device


def cpu_name() -> str:
    """The processor's model name, e.g. 'AMD EPYC' (Linux's /proc/cpuinfo; elsewhere what platform says)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                platform.processor() or platform.machine())


def describe_device(device: torch.device) -> str:
    """A short human description, e.g. 'CUDA: NVIDIA H200' or 'CPU (2 threads)'."""
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'s' if threads != 1 else ''})"


def fast_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matmuls beat float32 here: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX.

    Elsewhere (older CPUs, Apple MPS) bf16 is emulated or unsupported, and float32 is as fast or faster.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # private, but the only way torch exposes these flags; absent means no
        return any(getattr(torch.cpu, name, lambda: False)() for name in
                   ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return False
