"""How long a training run will take on this device, told before it starts: a few timed steps of its size.

The time of one step is measured (after a warm-up step) with the run's model size, batch, device and precision on
random characters: the median of several timed steps, so that one step slowed by something else on the machine
does not count; when the steps disagree a lot (a busy machine) the estimate says it is rough. The evaluations add
their forward passes, timed the same way. Measurements are remembered per size, so changing the number of steps or
the learning rate costs nothing; a size asked for again a minute later is timed again and the faster figure kept
(a machine busy with something else only ever makes a step slower, so one measurement taken under load does not
stay for good). Samples and saving are not counted.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from gpt.config import GPTConfig
from gpt.device import pick_device
from gpt.model import GPTLanguageModel
from gpt.training.optim import build_optimizer, resolve
from gpt.training.trainer import EVAL_POINTS, EVAL_SPACING, FIRST_EVAL_ITERS, TrainConfig

# after the warm-up, steps are timed for this long (MIN_TIMED_STEPS at least, unless that would take over
# MAX_SECONDS: the lecture's size takes seconds a step on a CPU), so that a small model's few milliseconds are not one
# noisy sample; steps whose quartiles differ by more than ROUGH_SPREAD make the estimate "rough"
TIMED_SECONDS, MIN_TIMED_STEPS, MAX_TIMED_STEPS, MAX_SECONDS, ROUGH_SPREAD = 0.3, 5, 50, 3.0, 1.3
VOCAB_SIZE = 65  # Tiny Shakespeare's; the vocabulary barely changes the time of a step


@dataclass
class Estimate:
    seconds: float  # the whole run: max_iters steps and every evaluation (a timed run: max_time)
    step_seconds: float  # one training step, measured
    eval_seconds: float  # one evaluation (eval_iters batches of each split)
    steps: int  # max_iters, or about how many steps a timed run makes before its deadline
    rough: bool = False  # the timed steps disagreed (the machine was busy): the figure may be far off


REMEASURE_S = 60.0  # a size asked for again after this long is timed again
_measured: dict[tuple, tuple[float, float, bool, float]] = {}  # size -> (step, forward, rough, when measured)


def _timings(*size) -> tuple[float, float, bool]:
    """(seconds per training step, seconds per evaluation forward pass, rough) of this size: the fastest here."""
    known = _measured.get(size)
    if known is not None and time.monotonic() - known[3] < REMEASURE_S:
        return known[:3]
    train, forward, rough = _measure(*size)
    if known is not None and known[0] < train:  # the earlier, faster figure stands
        train, forward, rough = known[:3]
    _measured[size] = (train, forward, rough, time.monotonic())
    while len(_measured) > 64:  # the oldest sizes go: a stranger trying sizes all day costs no memory
        _measured.pop(next(iter(_measured)))
    return train, forward, rough


def _measure(n_layer: int, n_head: int, n_embd: int, block_size: int, batch_size: int, bias: bool, device: str,
             bf16: bool, optimizer: str = "adamw") -> tuple[float, float, bool]:
    """(seconds per training step, seconds per evaluation forward pass, rough) of this size, timed now."""
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

    def timed(fn) -> float:
        began = time.perf_counter()
        fn()
        return time.perf_counter() - began

    first = timed(step)  # warm-up: the first step allocates
    times, start = [], time.perf_counter()
    while len(times) < MAX_TIMED_STEPS:
        spent = time.perf_counter() - start
        if times and spent > TIMED_SECONDS and (len(times) >= MIN_TIMED_STEPS or spent + first > MAX_SECONDS):
            break
        times.append(timed(step))
    times.sort()
    train = times[len(times) // 2]  # the median: a step slowed by another program does not move it
    rough = len(times) < MIN_TIMED_STEPS or times[3 * len(times) // 4] > ROUGH_SPREAD * times[len(times) // 4]
    model.eval()
    with torch.no_grad(), autocast():
        forward = min(timed(lambda: model(x, x)[1].item()) for _ in range(3 if train < 1 else 1))
    return train, forward, rough


def estimate_time(config: TrainConfig) -> Estimate:
    """The time config takes to train on this device (measured the first time a size is asked for)."""
    device = pick_device(config.device)
    bf16 = config.uses_bf16(device)
    train, forward, rough = _timings(config.n_layer, config.n_head, config.n_embd, config.block_size,
                                     config.batch_size, config.bias, str(device), bf16,
                                     resolve(config.optimizer, device))
    evaluation = 2 * config.eval_iters * forward  # train and val splits
    first = 2 * min(config.eval_iters, FIRST_EVAL_ITERS) * forward
    if config.max_time and not config.eval_interval:  # auto: evaluations spaced over the clock
        evals = min(EVAL_POINTS, config.max_time / max(1e-9, EVAL_SPACING * evaluation))
        steps = (config.max_time - first - evals * evaluation) / train
        return Estimate(config.max_time, train, evaluation, max(0, int(steps)), rough)
    every = config.eval_every()
    if config.max_time:  # the steps that fit before the final evaluation, with one every eval_interval steps
        steps = (config.max_time - first - evaluation) / (train + evaluation / every)
        return Estimate(config.max_time, train, evaluation, max(0, int(steps)), rough)
    evals = config.max_iters // every + (config.max_iters % every > 0)  # and the last
    return Estimate(config.max_iters * train + first + evals * evaluation, train, evaluation, config.max_iters, rough)
