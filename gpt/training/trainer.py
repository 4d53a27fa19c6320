"""The training loop, shared by the command line (`python -m train`) and the app.

One loop, several faces: it reports through events (plain dicts) passed to callbacks, and writes them to
metrics.jsonl in the run folder. Set the `stop` threading.Event to end a run between two steps: the best
weights so far are kept in model.safetensors, and training_state.safetensors lets --resume carry on.
Under torchrun it trains with DistributedDataParallel (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import copy
import math
import os
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from gpt.training import budget
from gpt.training import log as runlog
from gpt.sharing import weights
from gpt.sharing.card import CURVE_FILE, loss_curve_png, model_card
from gpt.config import GPTConfig, check_seed, whole_number
from gpt.data import SHAKESPEARE, TextData, load_text
from gpt.device import describe_device, fast_bf16, pick_device
from gpt.errors import ConfigError
from gpt.memory import check_fits
from gpt.training.optim import OPTIMIZERS, build_optimizer, resolve
from gpt.training.presets import PRESETS
from gpt.sharing.pretrained import GPT
from gpt.generation.decode import generate_text
from gpt.tokenizer import CharTokenizer

MODEL_FIELDS = [f.name for f in fields(GPTConfig) if f.name != "vocab_size"]
# eval_interval=0 (auto): about this many evaluations a run, so that a one-minute run tells its story as well as
# an hour's; a timed run spaces them over its clock, never closer than EVAL_SPACING times an evaluation's own time
# (evaluating stays under a fifth of the run)
EVAL_POINTS, EVAL_SPACING = 15, 4


@dataclass
class TrainConfig:
    # model (vocab_size comes from the text)
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    block_size: int = 256
    dropout: float = 0.2
    bias: bool = True
    # optimisation: AdamW (or Muon for the Blocks' matrices), linear warmup then cosine decay from learning_rate
    # to min_lr at max_iters; Muon's rate follows the same schedule, scaled by muon_lr / learning_rate
    optimizer: str = "adamw"  # "adamw", or "muon": Muon for the 2-D weights inside the Blocks, AdamW for the rest;
    # "auto": Muon where bf16 is native, else AdamW (gpt.training.optim.resolve), decided when the run starts
    muon_lr: float = 0.02  # Muon's peak learning rate (only with optimizer="muon")
    batch_size: int = 64
    max_iters: int = 5000
    max_time: float = 0.0  # seconds; above 0 the run ends at this time, or at max_iters if that comes first
    # (0 there: time alone), and the learning rate anneals to whichever ends it
    learning_rate: float = 3e-4
    min_lr: float = 3e-4
    warmup_iters: int = 0
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 0.0  # 0 = off
    # 0 = off; else evaluations, samples and saved weights use an exponential moving average of the weights, this
    # much of the average kept at each step: a model as good as a decayed learning rate gives, long before the end
    ema: float = 0.0
    # evaluation: loss on eval_iters batches of each split every eval_interval steps, and a short sample;
    # 0 = auto: about EVAL_POINTS evaluations over the run's steps, or over its time budget in a timed run
    eval_interval: int = 500
    eval_iters: int = 200
    sample_length: int = 200
    # steps between reads of the loss: each read waits for the device to finish, so on a GPU, where a small model's
    # step takes milliseconds, the losses are kept there and read (and logged) this many at once
    log_every: int = 1
    # where and how
    data: str = SHAKESPEARE  # "shakespeare" or the path of a UTF-8 text file
    init_from: str = ""  # fine-tune: a weights folder or Hub repo id to start from ("" = from scratch)
    seed: int = 1337
    device: str = "auto"  # auto = cuda > mps > cpu
    dtype: str = "auto"  # auto = bfloat16 autocast where the hardware has bf16 (CUDA, AVX512-BF16/AMX CPUs)
    compile: bool = False

    def __post_init__(self):
        for f in fields(self):  # forms and JSON send 6.0 for 6: accept whole numbers written as floats
            value = getattr(self, f.name)
            if f.type == "int" and isinstance(value, float) and value.is_integer():
                setattr(self, f.name, int(value))
            if value is None:
                raise ConfigError(f"{f.name} is empty: give it a value")
        self.model_config(vocab_size=1)  # GPTConfig validates the model fields
        positive = ["batch_size", "eval_iters", "log_every"]
        non_negative = ["max_iters", "warmup_iters", "sample_length", "eval_interval"]
        self.max_time = budget.seconds(self.max_time)  # "2m" from a command line, or seconds
        for name in positive + non_negative:
            whole_number(name, getattr(self, name), 1 if name in positive else 0)
        check_seed(self.seed)
        if isinstance(self.ema, bool) or not isinstance(self.ema, (int, float)) or not 0 <= self.ema < 1:
            raise ConfigError(f"ema must be 0 (off) or a fraction below 1, like 0.95, not {self.ema!r}")
        for name in ("learning_rate", "min_lr", "weight_decay", "grad_clip", "muon_lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ConfigError(f"{name} must be a number of 0 or more, not {value!r}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be above 0, not {self.learning_rate}")
        if self.min_lr > self.learning_rate:
            raise ConfigError(f"min_lr ({self.min_lr}) cannot be above learning_rate ({self.learning_rate})")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be from 0 up to (not including) 1, not {getattr(self, name)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be adamw, muon or auto (muon where bf16 is native), not "
                              f"{self.optimizer!r}")
        if self.optimizer != "adamw" and self.muon_lr <= 0:
            raise ConfigError(f"muon_lr must be above 0 with optimizer muon, not {self.muon_lr}")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"dtype must be auto, float32 or bfloat16, not {self.dtype!r}")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "TrainConfig":
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        if overrides.get("max_time") and "max_iters" not in overrides:
            overrides["max_iters"] = 0  # a timed run: the clock alone ends it, unless max_iters is given too
        return cls(**{**PRESETS[name], **overrides})

    def model_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, **{k: getattr(self, k) for k in MODEL_FIELDS})

    def uses_bf16(self, device) -> bool:
        """Whether training autocasts to bfloat16 on device: asked for, or auto where bf16 is native there."""
        return self.dtype == "bfloat16" or (self.dtype == "auto" and fast_bf16(device))

    def eval_every(self) -> int:
        """The steps between evaluations: eval_interval, or with auto (0) about EVAL_POINTS over max_iters."""
        return self.eval_interval or max(1, round(self.max_iters / EVAL_POINTS))


def get_lr(step: int, config: TrainConfig, progress: float | None = None) -> float:
    """Linear warmup over warmup_iters, then cosine decay to min_lr at max_iters.

    A timed run passes `progress`, the fraction of its time budget spent (0 -> 1): the decay then follows the
    clock and reaches min_lr at the deadline, whatever the machine's speed. Warmup stays counted in steps:
    what it protects is the optimizer's first few updates, however long they take.
    """
    if step < config.warmup_iters:
        return config.learning_rate * (step + 1) / (config.warmup_iters + 1)
    if progress is None:
        if step >= config.max_iters:
            return config.min_lr
        progress = (step - config.warmup_iters) / max(1, config.max_iters - config.warmup_iters)
    progress = min(max(progress, 0.0), 1.0)
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return config.min_lr + coeff * (config.learning_rate - config.min_lr)


def training_bytes(config: TrainConfig, vocab_size: int) -> int:
    """A rough upper estimate of the memory one training step needs, to refuse what cannot fit up front."""
    L, C, T, B, V = config.n_layer, config.n_embd, config.block_size, config.batch_size, vocab_size
    params = 12 * L * C * C + (2 * V + T) * C
    kept_for_backward = B * T * C * L * 20 + B * config.n_head * T * T * L * 2 + B * T * V * 3  # float32 values
    # weights, gradients and AdamW's two moments: 16 bytes a parameter; 4 more for the weights' average (ema)
    return (20 if config.ema else 16) * params + 4 * kept_for_backward


def moving_average(model: torch.nn.Module, decay: float) -> AveragedModel:
    """A copy of the weights that follows them slowly: after each step, average = decay * average + (1 - decay) *
    weights. It smooths out the last steps' noise, as a decayed learning rate would, long before the end."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))  # .update_parameters(model) each step


def _seed(*parts: int) -> int:
    return hash(parts) & 0x7FFF_FFFF_FFFF_FFFF  # a tuple of ints hashes the same in every run


@torch.no_grad()
def estimate_loss(model: GPT, data: TextData, eval_iters: int, batch_size: int, seed: int = 0,
                  autocast=nullcontext) -> dict[str, float]:
    """Mean loss over eval_iters random batches of each split, in eval mode (no dropout), as in the lecture."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)  # its own RNG: evaluating never changes the training run
    out = {}
    for split in ("train", "val"):
        losses = []
        for k in range(eval_iters):
            X, Y = data.get_batch(split, batch_size, generator)
            with autocast():
                _, loss = model(X, Y)
            losses.append(loss.float())
        out[split] = torch.stack(losses).mean().item()  # one wait for the device, not one per batch
    model.train(was_training)
    return out


# the evaluation at step 0 of a new run uses this many batches per split: a freshly initialised model predicts
# close to uniform on every batch (loss about ln(vocab_size)), so a few batches give the number, and the first
# point of the loss curve appears within seconds even for the lecture's model on a CPU
FIRST_EVAL_ITERS = 4


class SteadyClock:
    """A clock that moves `tick` seconds at each reading: a timed run under it takes the same steps and evaluations
    on any machine, however busy (the tests' and the GPU proof's dry run; a real run uses time.perf_counter)."""

    def __init__(self, tick: float = 0.005):
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


class Trainer:
    """Builds model, data and optimizer from a TrainConfig, then `run()` trains and reports events."""

    def __init__(self, config: TrainConfig, out_dir: str | Path, *, resume: bool = False,
                 callbacks: list[Callable[[dict], None]] = (), stop: threading.Event | None = None,
                 model_factory: Callable[[GPTConfig, list[str]], torch.nn.Module] = GPT, command: str | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.config = config
        self.clock = clock  # seconds, for max_time, evaluations by the clock and tokens/s; tests pass their own
        self.command = command  # the command line that started the run, for the model card
        self.out_dir = Path(out_dir)
        self.callbacks = list(callbacks)
        self.stop = stop or threading.Event()
        self.lock = threading.Lock()  # held during each step, so snapshot() never sees half an update

        # started by torchrun: DistributedDataParallel, one process too (as nanoGPT), over the device's backend
        self.rank, self.world_size, self.ddp = 0, 1, "RANK" in os.environ
        self.device = pick_device(config.device)
        self.config = config = replace(config, optimizer=resolve(config.optimizer, self.device))  # "auto": which
        if self.ddp:
            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
            if self.device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
        self.master = self.rank == 0
        if config.batch_size % self.world_size:
            raise ConfigError(f"batch_size ({config.batch_size}) must divide evenly over {self.world_size} processes")
        self.rank_batch = config.batch_size // self.world_size  # same global batch, whatever the process count

        # bf16 matmuls where they are native: about twice the tokens/s of float32, on CUDA and on recent CPUs
        use_bf16 = config.uses_bf16(self.device)
        self.autocast = (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if use_bf16 else nullcontext
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 matmuls: much faster, precise enough here

        text = load_text(config.data)
        saved, source = None, None
        if resume:
            _, vocab = weights.read_config(self.out_dir)
            self.tokenizer = CharTokenizer(vocab)
            saved = weights.load_training_state(self.out_dir)
        elif config.init_from:
            source, vocab = self._fine_tune_source(text)
            config = self.config
        else:
            self.tokenizer = CharTokenizer.from_text(text)
        self.data = TextData(text, self.tokenizer, config.block_size, self.device)
        check_fits(training_bytes(config, self.tokenizer.vocab_size), self.device, "this model and batch", "to train",
                   "use fewer layers, a narrower model, a shorter block or a smaller batch")

        torch.manual_seed(config.seed)
        self.model = model_factory(config.model_config(self.tokenizer.vocab_size), self.tokenizer.chars)
        if source is not None:
            self.model.load_state_dict(weights.read_state_dict(source, self.model))
        self.model.to(self.device)
        self.optimizer = build_optimizer(self.model, config.optimizer, config.learning_rate, config.muon_lr,
                                         config.weight_decay, (config.beta1, config.beta2),
                                         fused=self.device.type == "cuda")
        self.step, self.best_val, self.elapsed_before = 0, math.inf, 0.0
        self.eval_seconds = 0.0  # what the last evaluation (with its saves) took: a timed run keeps room for one
        self.average = None
        if config.ema:
            self.average = moving_average(self.model, config.ema)
        if saved is not None:
            self._restore(*saved)

        self.train_model = self.model
        if config.compile:
            self.train_model = torch.compile(self.model)
        if self.ddp:
            from torch.nn.parallel import DistributedDataParallel

            self.train_model = DistributedDataParallel(
                self.train_model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.compile_seconds = 0.0  # run() compiles first, before its clock starts

    def _fine_tune_source(self, text: str) -> tuple[Path, list[str]]:
        """The weights folder to start from; the model's shape and vocabulary become theirs (dropout stays ours)."""
        source = weights.locate(self.config.init_from)
        model_config, vocab = weights.read_config(source)
        self.config = replace(self.config, **{k: getattr(model_config, k) for k in MODEL_FIELDS if k != "dropout"})
        self.tokenizer = CharTokenizer(vocab)
        unknown = self.tokenizer.unknown(text)
        if unknown:
            shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in unknown[:20])
            more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
            raise ConfigError(f"the text has {len(unknown)} character(s) that {weights.describe_source(source)} "
                              f"cannot represent: {shown}{more}. They know {len(vocab)} characters: remove or "
                              f"replace the others, or train from scratch")
        return source, vocab

    def _compile_now(self) -> float:
        """torch.compile compiles at the first call: make that call before the run's clock starts, so that a timed
        run's minutes are all training. A forward and backward whose gradients are dropped, with the random state
        put back: the run itself is the same as without it. Returns the seconds it took."""
        began = self.clock()
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        X, Y = self.data.get_batch("train", self.rank_batch, torch.Generator().manual_seed(0))
        with self.autocast():
            _, loss = self.train_model(X, Y)
        loss.backward()
        loss.item()  # waits for the compiled kernels' first run
        self.optimizer.zero_grad(set_to_none=True)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, self.device)
        return self.clock() - began

    @staticmethod
    def saved_config(out_dir: str | Path) -> TrainConfig:
        """The TrainConfig a run folder was trained with, for --resume."""
        return TrainConfig(**weights.read_training_meta(out_dir)["config"])

    @property
    def eval_model(self) -> GPT:
        """The weights evaluations score, samples show and saves keep: the moving average (ema), or the model."""
        return self.average.module if self.average is not None else self.model

    def _restore(self, model_state, optimizer_state, rng, meta, average_state):
        saved = TrainConfig(**meta["config"])
        changed = [k for k in MODEL_FIELDS if getattr(saved, k) != getattr(self.config, k)]
        if changed:
            raise ConfigError(f"cannot resume with a different model: {', '.join(changed)} changed")
        if saved.optimizer != self.config.optimizer:  # the saved state holds the other optimizer's moments
            raise ConfigError(f"cannot resume a {saved.optimizer} run with optimizer {self.config.optimizer}")
        weights.check_state_dict(model_state, self.model, self.out_dir / weights.STATE_FILE)
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(optimizer_state)
        if self.average is not None:  # a run saved without an average starts one from its weights
            self.average.module.load_state_dict(average_state or model_state)
            self.average.n_averaged.fill_(1)  # averaging goes on from there (0 would copy the model over it)
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.step, self.best_val, self.elapsed_before = meta["step"], meta["best_val"], meta["elapsed"]
        self.eval_seconds = meta.get("eval_seconds", 0.0)

    # --- events ---

    def emit(self, event: dict) -> None:
        if not self.master:
            return
        try:
            runlog.append(self.out_dir, event)
        except OSError as e:  # a full disk: say so in one line, as a failed save does
            raise weights.save_error(runlog.path(self.out_dir), e) from None
        for callback in self.callbacks:
            callback(event)

    # --- the loop ---

    def run(self) -> dict:
        config, model = self.config, self.model
        tokens_per_step = config.batch_size * config.block_size
        if self.master:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            weights.remove_temporary_files(self.out_dir)  # left by a kill in the middle of a save
            if self.step > 0:
                runlog.trim(self.out_dir, self.step)  # forget what came after the saved step
            else:
                runlog.remove(self.out_dir)
                weights.save_start_embedding(self.out_dir, model.token_embedding_table.weight)  # the map at step 0
        if config.compile:  # in run(), so that an app's Start returns at once and its thread does the waiting
            self.compile_seconds = self._compile_now()
        self.emit({"event": "start", "step": self.step, "max_iters": config.max_iters, "config": asdict(config),
                   "params": model.num_params(), "vocab_size": self.tokenizer.vocab_size,
                   "device": describe_device(self.device), "world_size": self.world_size,
                   "tokens_per_step": tokens_per_step, "backend": dist.get_backend() if self.ddp else None,
                   "compile_seconds": self.compile_seconds,
                   "resumed": self.step > 0, "command": self.command,
                   "max_time": config.max_time, "elapsed": self.elapsed_before, "time": time.time(),
                   "init_from": weights.describe_source(config.init_from) if config.init_from else None})

        started = self.clock()
        elapsed = lambda: self.elapsed_before + self.clock() - started
        # a saved state is always written right after an eval: a resumed run does not repeat it
        last_eval, stopped, rate, dt = (self.step if self.step > 0 else None), False, None, 0.0
        pending, window_began = [], started  # steps whose loss is still on the device (log_every)
        next_eval_at = self.elapsed_before if self.step == 0 else self._next_eval_time(self.elapsed_before)
        model.train()
        while True:
            stopping = self._should_stop()
            # the run ends at max_iters, or at max_time, whichever comes first (a timed run's max_iters 0: no limit)
            done = bool(config.max_iters or not config.max_time) and self.step >= config.max_iters
            done = done or bool(config.max_time) and self._out_of_time(elapsed(), dt)
            due = self._eval_due(elapsed(), next_eval_at)
            if pending and (due or done or stopping):  # the steps are logged before the evaluation that follows
                dt, rate = self._log_steps(pending, window_began, started, rate)
            if due or done or stopping:
                if last_eval != self.step:
                    began = self.clock()
                    self._evaluate(elapsed())
                    if self.master:
                        self._save_state(elapsed())
                    self.eval_seconds = self.clock() - began  # the evaluation, its sample and saves
                    last_eval, next_eval_at = self.step, self._next_eval_time(elapsed())
                    if config.max_time and not done:  # time ran out during it: it was the final evaluation
                        done = self._out_of_time(elapsed(), dt)
            if done or stopping:
                stopped = stopping and not done
                break

            if not pending:
                window_began = self.clock()
            lr = get_lr(self.step, config, self._progress(elapsed()))
            with self.lock:
                for group in self.optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)  # Muon's group: muon_lr / learning_rate
                generator = torch.Generator().manual_seed(_seed(config.seed, self.rank, self.step))
                X, Y = self.data.get_batch("train", self.rank_batch, generator)
                with self.autocast():
                    _, loss = self.train_model(X, Y)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                self.optimizer.step()
                if self.average is not None:
                    self.average.update_parameters(self.model)
                self.step += 1
            pending.append((self.step, loss.detach(), lr))
            if len(pending) >= config.log_every or self.step == 1:  # the first step's time shows compiling
                dt, rate = self._log_steps(pending, window_began, started, rate)

        result = {"event": "stopped" if stopped else "done", "step": self.step, "best_val": self.best_val,
                  "elapsed": elapsed(), "out_dir": str(self.out_dir)}
        self.emit(result)
        if self.ddp:
            dist.barrier()
            dist.destroy_process_group()
        return result

    def _log_steps(self, pending: list, window_began: float, started: float, rate: float | None):
        """Read the pending steps' losses from the device at once and log them; (seconds per step, tokens/s)."""
        losses = torch.stack([loss for _, loss, _ in pending]).float().tolist()  # waits for the steps to finish
        now = self.clock()
        dt = (now - window_began) / len(pending)
        tokens_per_step = self.config.batch_size * self.config.block_size
        window_end = self.elapsed_before + now - started
        for i, ((step, _, lr), loss) in enumerate(zip(pending, losses)):
            if not math.isfinite(loss):
                raise ConfigError(f"the loss became {loss} at step {step}: lower the learning rate")
            rate = tokens_per_step / dt if rate is None else 0.9 * rate + 0.1 * tokens_per_step / dt
            self.emit({"event": "step", "step": step, "loss": loss, "lr": lr, "tokens_per_sec": rate,
                       "elapsed": window_end - (len(pending) - 1 - i) * dt})
        pending.clear()
        return dt, rate

    def _process_0_decides(self, flag: bool) -> bool:
        """Under DDP every process must take the same decision (stop, evaluate, time is up) at the same step, or the
        others would wait forever: process 0's decides."""
        if self.ddp:
            t = torch.tensor([float(flag)], device=self.device if self.device.type == "cuda" else "cpu")
            dist.broadcast(t, src=0)
            flag = bool(t.item())
        return flag

    def _eval_due(self, elapsed: float, next_eval_at: float) -> bool:
        """Whether to evaluate before this step: every eval_every() steps, or (a timed run, auto) by the clock."""
        if not self.config.max_time or self.config.eval_interval:
            return self.step % self.config.eval_every() == 0
        return self._process_0_decides(self.step == 0 or elapsed >= next_eval_at)

    def _next_eval_time(self, elapsed: float) -> float:
        """When a timed run with auto evaluations evaluates next: a EVAL_POINTS-th of its clock on."""
        return elapsed + max(self.config.max_time / EVAL_POINTS, EVAL_SPACING * self.eval_seconds)

    def _out_of_time(self, elapsed: float, step_seconds: float) -> bool:
        """A timed run ends when one more step and the final evaluation would no longer fit before max_time."""
        return self._process_0_decides(elapsed + step_seconds + self.eval_seconds >= self.config.max_time)

    def _progress(self, elapsed: float) -> float | None:
        """How far a timed run is, 0 -> 1, for the learning rate's decay: the fraction of its time spent (1 when only
        the final evaluation is left), or of its steps where it also has max_iters and they run out first; None for
        a run of steps alone."""
        config = self.config
        if not config.max_time:
            return None
        progress = elapsed / max(1e-9, config.max_time - self.eval_seconds)
        if config.max_iters:
            progress = max(progress, (self.step - config.warmup_iters) / max(1, config.max_iters - config.warmup_iters))
        return progress

    def _should_stop(self) -> bool:
        return self._process_0_decides(self.stop.is_set())  # torchrun gives every process the Ctrl-C

    def _evaluate(self, elapsed: float) -> None:
        if not self.master:
            return
        config = self.config
        iters = min(config.eval_iters, FIRST_EVAL_ITERS) if self.step == 0 else config.eval_iters
        losses = estimate_loss(self.eval_model, self.data, iters, config.batch_size, _seed(config.seed, -1, self.step),
                               self.autocast)
        sample = self.sample(config.sample_length) if config.sample_length else ""
        improved = losses["val"] < self.best_val
        if improved:
            self.best_val = losses["val"]
            self._save_weights(losses, sample, elapsed)
        self.emit({"event": "eval", "step": self.step, "train_loss": losses["train"], "val_loss": losses["val"],
                   "best_val": self.best_val, "saved": improved, "sample": sample, "elapsed": elapsed,
                   "eval_iters": iters})

    def sample(self, length: int, prompt: str = "") -> str:
        """A short sample from the model as it is now: the learner watches noise turn into Shakespeare."""
        model = self.eval_model
        was_training = model.training
        model.eval()
        # on the CPU, float32 decodes one row faster than bf16 autocast, which casts every weight at each step
        # (0.31 against 0.48 s for 200 characters of the cpu preset: python bench/cpu_autocast.py)
        with self.autocast() if self.device.type != "cpu" else nullcontext():
            text = generate_text(model, prompt, max_new_tokens=length, seed=self.config.seed)[0]
        model.train(was_training)
        return text

    def _save_state(self, elapsed: float) -> None:
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        meta = {"step": self.step, "best_val": self.best_val, "elapsed": elapsed, "config": asdict(self.config),
                "eval_seconds": self.eval_seconds}
        weights.save_training_state(self.out_dir, self.model, self.optimizer, rng, meta,
                                    self.average.module if self.average is not None else None)

    def _save_weights(self, losses: dict[str, float], sample: str, elapsed: float) -> None:
        """The weights, with a model card and loss curve built from the run's log and this evaluation."""
        log = runlog.read_log(self.out_dir)  # the events so far; this evaluation is logged after the save
        log["evals"].append({"step": self.step, "train_loss": losses["train"], "val_loss": losses["val"],
                             "sample": sample, "elapsed": elapsed, "saved": True})
        model = self.eval_model
        name = os.path.relpath(self.out_dir)  # what GPT.from_pretrained is given from here
        card = model_card(model.config, model.vocab, log, str(self.out_dir) if name.startswith("..") else name)
        weights.save_weights(model, self.out_dir, card=card)
        weights.atomic_write(self.out_dir / CURVE_FILE, lambda tmp: tmp.write_bytes(loss_curve_png(log)))

    def snapshot(self) -> GPT:
        """A copy of the model as it is right now (between two steps; its average, with ema), in eval mode, on the
        CPU."""
        with self.lock:
            model = copy.deepcopy(self.eval_model)
        return model.cpu().eval()
