"""Will it fit? A model's memory, judged from its config before anything is built.

A config.json is text anyone can write: `n_embd: 10000000` would make torch allocate until the machine gives up.
Loading weights (the app, `python -m gpt.generate`, a pull from the Hub) and training both ask here first.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from gpt.config import GPTConfig
from gpt.device import describe_device
from gpt.errors import ConfigError, GPTError
from gpt.model import param_count

MEMINFO = Path("/proc/meminfo")


def device_memory(device: torch.device) -> int | None:
    """Bytes this device can still give (CUDA: free memory; CPU: MemAvailable on Linux, else all of it)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:
            for line in MEMINFO.read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        if hasattr(os, "sysconf"):
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return None


def check_fits(need: int, device: torch.device | str, what: str, purpose: str, advice: str,
               error: type[GPTError] = ConfigError) -> None:
    """Refuse, with a message, what would take more than 80% of the memory the device has left."""
    device = torch.device(device)
    have = device_memory(device)
    if have is not None and need > 0.8 * have:
        raise error(f"{what} would need about {need / 2**30:.1f} GB {purpose}, and {describe_device(device)} has "
                    f"{have / 2**30:.1f} GB free: {advice}")


def cache_bytes(config: GPTConfig) -> int:
    """The KV cache of one text in float32: keys and values for every layer and position."""
    return 2 * 4 * config.n_layer * config.block_size * config.n_embd


def loading_bytes(config: GPTConfig) -> int:
    """Float32 weights three times over (the model, the tensors read from the file, a copy to generate with) and
    the KV cache of one text."""
    return 3 * 4 * param_count(config) + cache_bytes(config)


def check_loadable(config: GPTConfig, device: torch.device | str, where, error: type[GPTError]) -> None:
    """A clear error before building a model from a config.json that this machine cannot hold."""
    check_fits(loading_bytes(config), device,
               f"{where} describes a model of {param_count(config):,} parameters, which", "to load",
               "these weights are too big for this machine", error)
