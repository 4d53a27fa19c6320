"""How long a training run will take on this device, told before it starts: a few timed steps of its size.

The time of one step is measured (after a warm-up step) with the run's model size, batch, device and precision on
random characters; the evaluations add their forward passes, timed the same way. Measurements are remembered per
size, so changing the number of steps or the learning rate costs nothing; a size asked for again a minute later
is timed again and the faster figure kept (a machine busy with something else only ever makes a step slower, so
one measurement taken under load does not stay for good). Samples and saving are not counted.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from gpt.config import GPTConfig
from gpt.device import fast_bf16, pick_device
from gpt.model import GPTLanguageModel
from gpt.optim import build_optimizer
from gpt.trainer import FIRST_EVAL_ITERS, TrainConfig

# after the warm-up, steps are timed for this long (one at least: the lecture's size takes seconds a step on a
# CPU), so that a small model's few milliseconds are not one noisy sample
TIMED_SECONDS, MAX_TIMED_STEPS = 0.2, 50
VOCAB_SIZE = 65  # Tiny Shakespeare's; the vocabulary barely changes the time of a step


@dataclass
class Estimate:
    seconds: float  # the whole run: max_iters steps and every evaluation (a timed run: max_time)
    step_seconds: float  # one training step, measured
    eval_seconds: float  # one evaluation (eval_iters batches of each split)
    steps: int  # max_iters, or about how many steps a timed run makes before its deadline


REMEASURE_S = 60.0  # a size asked for again after this long is timed again
_measured: dict[tuple, tuple[float, float, float]] = {}  # size -> (step, forward, when measured)


def _timings(*size) -> tuple[float, float]:
    """(seconds per training step, seconds per evaluation forward pass) of this size: the fastest measured here."""
    known = _measured.get(size)
    if known is not None and time.monotonic() - known[2] < REMEASURE_S:
        return known[:2]
    train, forward = _measure(*size)
    if known is not None:
        train, forward = min(train, known[0]), min(forward, known[1])
    _measured[size] = (train, forward, time.monotonic())
    while len(_measured) > 64:  # the oldest sizes go: a stranger trying sizes all day costs no memory
        _measured.pop(next(iter(_measured)))
    return train, forward


def _measure(n_layer: int, n_head: int, n_embd: int, block_size: int, batch_size: int, bias: bool, device: str,
             bf16: bool, optimizer: str = "adamw") -> tuple[float, float]:
    """(seconds per training step, seconds per evaluation forward pass) of this size, timed now."""
    config = GPTConfig(vocab_size=VOCAB_SIZE, block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                       dropout=0.0, bias=bias)
    model = GPTLanguageModel(config).to(device)
    optimizer = build_optimizer(model, optimizer, lr=1e-4, muon_lr=1e-4, weight_decay=0.0, betas=(0.9, 0.99))
    autocast = (lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16)) if bf16 else nullcontext
    x = torch.randint(VOCAB_SIZE, (batch_size, block_size), generator=torch.Generator().manual_seed(0)).to(device)

    def step():
        with autocast():
            _, loss = model(x, x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()  # waits for the device

    step()  # warm-up: the first step allocates
    start, steps = time.perf_counter(), 0
    while steps < MAX_TIMED_STEPS and (steps == 0 or time.perf_counter() - start < TIMED_SECONDS):
        step()
        steps += 1
    train = (time.perf_counter() - start) / steps
    model.eval()
    with torch.no_grad(), autocast():
        start = time.perf_counter()
        model(x, x)[1].item()
        forward = time.perf_counter() - start
    return train, forward


def estimate_time(config: TrainConfig) -> Estimate:
    """The time config takes to train on this device (measured the first time a size is asked for)."""
    device = pick_device(config.device)
    bf16 = config.dtype == "bfloat16" or (config.dtype == "auto" and fast_bf16(device))
    train, forward = _timings(config.n_layer, config.n_head, config.n_embd, config.block_size, config.batch_size,
                              config.bias, str(device), bf16, config.optimizer)
    evaluation = 2 * config.eval_iters * forward  # train and val splits
    first = 2 * min(config.eval_iters, FIRST_EVAL_ITERS) * forward
    if config.max_time:  # the steps that fit before the final evaluation, with one every eval_interval steps
        steps = (config.max_time - first - evaluation) / (train + evaluation / config.eval_interval)
        return Estimate(config.max_time, train, evaluation, max(0, int(steps)))
    evals = config.max_iters // config.eval_interval + (config.max_iters % config.eval_interval > 0)  # and the last
    return Estimate(config.max_iters * train + first + evals * evaluation, train, evaluation, config.max_iters)
