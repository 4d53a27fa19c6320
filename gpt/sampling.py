"""Generation: sample one character at a time, streaming, with a KV cache.

The prompt is encoded once (prefill); each later step feeds only the newest token. Positions are learned only
up to block_size, so when the window is full the cache is rebuilt from the most recent `rebuild` tokens
(default block_size // 2) and generation goes on: the context then grows again from rebuild to block_size.
rebuild=block_size re-encodes the full window at every step: exactly the lecture's `idx[:, -block_size:]`.

A single stream is decoded by a Batch of one: the very code gpt.engine runs for many visitors at once, so a
stream's tokens never depend on what else is in its batch (see Batch).

inference_model() gives the copy to generate with: int8 or bfloat16 weights where that is faster, else the model.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn
from torch.nn import functional as F

from gpt.config import GPTConfig, check_seed, whole_number
from gpt.device import cpu_name, fast_bf16
from gpt.errors import SamplingError
from gpt.memory import cache_bytes
from gpt.model import GPTLanguageModel
from gpt.tokenizer import CharTokenizer


class LayerCache:
    """One layer's keys and values, (B, nh, block_size, hs), filled up to `pos`."""

    def __init__(self, shape: tuple[int, ...], device, dtype):
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0

    def update(self, k, v):
        """Append T new positions (B, nh, T, hs); return every key and value so far and what each new one sees."""
        past, T = self.pos, k.size(2)
        self.k[:, :, past:past + T] = k
        self.v[:, :, past:past + T] = v
        self.pos += T
        # new token i sees every cached position and the new ones up to itself; a single new token sees everything
        mask = None if T == 1 else torch.ones(T, past + T, dtype=torch.bool, device=k.device).tril(diagonal=past)
        return self.k[:, :, :past + T], self.v[:, :, :past + T], mask


class KVCache:
    """Keys and values of the positions seen so far, so each new token costs one position, not the window."""

    def __init__(self, config: GPTConfig, batch_size: int, device=None, dtype=torch.float32):
        shape = (batch_size, config.n_head, config.block_size, config.head_size)
        self.layers = [LayerCache(shape, device, dtype) for _ in range(config.n_layer)]
        self.block_size = config.block_size
        self.device = device

    @property
    def pos(self) -> int:
        """Positions filled so far (every layer agrees between two forward passes)."""
        return self.layers[-1].pos

    def positions(self, T: int) -> torch.Tensor:
        """The positions of T new tokens, (T,): right after those already cached."""
        if self.pos + T > self.block_size:
            raise ValueError(f"context of {self.pos + T} tokens is longer than block_size ({self.block_size}): "
                             f"positions are learned only up to block_size")
        return torch.arange(self.pos, self.pos + T, device=self.device)

    def layer(self, i: int) -> LayerCache:
        return self.layers[i]

    def reset(self) -> None:
        for layer in self.layers:
            layer.pos = 0


class RowCache:
    """Keys and values of up to `rows` streams, each at its own position: (n_layer, rows, nh, block_size, hs).

    Rows stay in a fixed padded layout and each new token attends through a per-row mask over the whole block,
    so a row's arithmetic has the same shapes whichever other rows share the forward pass.
    """

    def __init__(self, config: GPTConfig, rows: int, device=None, dtype=torch.float32):
        shape = (config.n_layer, rows, config.n_head, config.block_size, config.head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = torch.zeros(rows, dtype=torch.long, device=device)  # (rows,) positions filled in each row
        self.block_size = config.block_size

    def rows(self, lo: int, hi: int) -> "CacheRows":
        """Rows lo..hi-1, as the cache argument of GPTLanguageModel.forward for one new token per row."""
        return CacheRows(self, lo, hi)

    def fill(self, row: int, cache: KVCache) -> None:
        """Put a one-row KVCache (a prefill) into `row`."""
        T = cache.pos
        for i, layer in enumerate(cache.layers):
            self.k[i, row, :, :T] = layer.k[0, :, :T]
            self.v[i, row, :, :T] = layer.v[0, :, :T]
        self.pos[row] = T

    def move(self, src: int, dst: int) -> None:
        """Copy row src into row dst (a stream left: the last row takes its place, so rows stay 0..n-1)."""
        self.k[:, dst] = self.k[:, src]
        self.v[:, dst] = self.v[:, src]
        self.pos[dst] = self.pos[src]


class CacheRows:
    """A slice of a RowCache that the model's forward reads and writes; one new position per row."""

    def __init__(self, cache: RowCache, lo: int, hi: int):
        self.cache, self.lo, self.hi = cache, lo, hi
        pos = cache.pos[lo:hi]  # (B,)
        if bool((pos >= cache.block_size).any()):
            raise ValueError(f"a row is full: positions are learned only up to block_size ({cache.block_size})")
        self.pos = pos
        # (B, 1, 1, block_size): each row sees its filled positions and the new one
        self.mask = (torch.arange(cache.block_size, device=pos.device)[None, :] <= pos[:, None])[:, None, None, :]
        # where each row's and head's new key goes in a layer's (rows * nh * block_size, hs) view: one index_copy_
        nh = cache.k.size(2)
        slots = (torch.arange(lo, hi, device=pos.device)[:, None] * nh + torch.arange(nh, device=pos.device))
        self.slots = (slots * cache.block_size + pos[:, None]).flatten()  # (B * nh,)

    def positions(self, T: int) -> torch.Tensor:  # (B, 1)
        if T != 1:
            raise ValueError("a RowCache takes one new token per row")
        return self.pos[:, None]

    def layer(self, i: int) -> "CacheRows":
        self.i = i
        return self

    def update(self, k, v):
        """Write each row's new key and value (B, nh, 1, hs) at its own position; return the padded rows."""
        dtype = self.cache.k.dtype  # under autocast (a training run's samples) k and v come in bf16
        hs = k.size(-1)
        self.cache.k[self.i].view(-1, hs).index_copy_(0, self.slots, k.reshape(-1, hs).to(dtype))  # (B * nh, hs)
        self.cache.v[self.i].view(-1, hs).index_copy_(0, self.slots, v.reshape(-1, hs).to(dtype))
        return self.cache.k[self.i, self.lo:self.hi], self.cache.v[self.i, self.lo:self.hi], self.mask


def check_settings(max_new_tokens, temperature, top_k, top_p, num_samples=1, seed=None):
    whole_number("max_new_tokens", max_new_tokens, 0, SamplingError)
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 100:
        raise SamplingError(f"temperature must be between 0 (greedy) and 100, not {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 0):
        raise SamplingError(f"top_k must be a whole number (0 or empty = off), not {top_k!r}")
    if top_p is not None and (not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise SamplingError(f"top_p must be above 0 and at most 1 (1 = off), not {top_p!r}")
    whole_number("num_samples", num_samples, 1, SamplingError)
    if seed is not None:
        check_seed(seed, SamplingError)


DTYPES = ("auto", "float32", "bfloat16", "int8")


class Int8Linear(nn.Module):
    """A Linear for generation whose weights are int8, one scale per output row ("weight-only" quantization).

    Generating one character reads every weight once, so the bytes per weight set the speed: 1 here, 2 in bf16,
    4 in float32. Activations stay bf16. Measured: the default weights' val loss is unchanged (see bench/README.md).
    Many positions at once (a prompt, a cache rebuild past block_size) go through a bf16 matmul of the same int8
    values instead: torch's int8 kernel costs the same for each row, a bf16 matmul shares the work between them
    (a 63-character rebuild of the default weights: about 6 ms against 8; a short prompt pays about 1 ms more).
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()  # (out, in)
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127  # (out,) the largest weight of each row maps to 127
        self.register_buffer("weight", torch.round(w / scale[:, None]).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(torch.bfloat16))

    def forward(self, x):  # (B, T, in) -> (B, T, out)
        if x.size(1) > 1:  # T positions: a prompt or a rebuild. Decoding feeds one per row, alone or in a crowd
            y = F.linear(x, self.weight.to(x.dtype)) * self.scale
        else:
            y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, x.size(-1)), self.weight, self.scale)
            y = y.view(*x.shape[:-1], -1)
        return y if self.bias is None else y + self.bias

    @staticmethod
    def fits(linear: nn.Linear) -> bool:
        # torch's CPU kernel reads the input 16 values at a time: other widths give wrong results (or crash)
        return linear.in_features % 16 == 0 and hasattr(torch.ops.aten, "_weight_int8pack_mm")


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
    return _precision_copy(model, dtype)


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
            seconds = {name: _time_generation(_precision_copy(model, name)) for name in candidates}
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


def _precision_copy(model: nn.Module, dtype: str) -> nn.Module:
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
    crowd's batch share their matmuls exactly (gpt.engine)."""
    device = next(model.parameters()).device
    if not fast_bf16(device):
        return "float32"
    return "int8" if device.type == "cpu" else "bfloat16"


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


def sample_rows(logits, streams: list["Stream"]) -> list[int]:
    """(n, vocab_size) logits -> n token ids, row i with streams[i]'s settings and random generator.

    sample_next's temperature, top-k and top-p, done for every row at once (one step of a crowd costs a few small
    ops, not a few per visitor); each row draws one uniform number from its own generator and picks its token by
    the inverse of its distribution. Every op works row by row, so a row's token never depends on the others.
    """
    n, V = logits.shape
    device = logits.device
    settings = torch.tensor([[s.temperature or 1.0, min(s.top_k or V, V), 1.0 if s.top_p is None else s.top_p]
                             for s in streams], device=device)  # (n, 3)
    temperature, top_k, top_p = settings[:, :1], settings[:, 1:2], settings[:, 2:]
    u = torch.cat([torch.rand(1, generator=s.generator, device=s.generator.device) for s in streams]).to(device)
    sorted_logits, order = torch.sort(logits.float() / temperature, dim=-1, descending=True, stable=True)  # (n, V)
    sorted_logits = sorted_logits.masked_fill(torch.arange(V, device=device) >= top_k, float("-inf"))  # top-k
    probs = F.softmax(sorted_logits, dim=-1)
    # nucleus: keep the smallest set of most likely tokens whose probabilities add up to top_p (the first is kept)
    probs = probs.masked_fill((probs.cumsum(dim=-1) - probs >= top_p) & (top_p < 1), 0.0)
    cdf = probs.cumsum(dim=-1)  # (n, V)
    pick = torch.searchsorted(cdf, (u[:, None] * cdf[:, -1:]).contiguous(), right=True).clamp(max=V - 1)  # (n, 1)
    tokens = order.gather(1, pick).squeeze(1)  # (n,)
    greedy = torch.tensor([s.temperature == 0 for s in streams], device=device)
    return torch.where(greedy, logits.argmax(dim=-1), tokens).tolist()


class Stream:
    """One request: its context, its settings and its own random generator (the seed's)."""

    def __init__(self, context: list[int], max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, rebuild: int | None = None, device=None):
        self.context = list(context)  # the last block_size tokens at most
        self.max_new_tokens = max_new_tokens
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.rebuild = rebuild
        self.generator = torch.Generator(device=device or "cpu")
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self.made = 0  # tokens generated so far
        self.logits = None  # (1, vocab_size): what the next token is sampled from


_SHARED_ROWS: dict[tuple, int | None] = {}
PROBE_ROWS = 64  # min_shared_rows looks up to here (the engine's rows): alone and in a crowd pad alike
MAX_PAD = 8  # a lone stream computes at most this many rows
PAD_BYTES = 64 * 2**20  # and their keys and values stay within this


def min_shared_rows(model: nn.Module, rows: int = PROBE_ROWS) -> int | None:
    """The fewest rows (at most MAX_PAD) from which every matmul of the model gives each row the same bits whatever
    the number of rows, up to `rows`; None if there is none.

    A CPU matmul may take another path for a few rows than for many (float32 here: 1 to 3 rows differ from 4 and
    more; with 2 threads, 1 to 11), so it is measured on the model's own Linear layers, in a decoding step's shape,
    once per process, shape and thread count: well under a second.
    """
    layers = {}
    for m in model.modules():
        if isinstance(m, (nn.Linear, Int8Linear)):
            w = m.weight
            layers.setdefault((type(m).__name__, tuple(w.shape), w.dtype, str(w.device)), m)
    key = (tuple(layers), rows, torch.get_num_threads())  # threads split a matmul by rows, differently per count
    if key not in _SHARED_ROWS:
        dtype = model.token_embedding_table.weight.dtype  # what the layers are fed
        g = torch.Generator(device=next(model.parameters()).device).manual_seed(0)
        first = 1
        with torch.inference_mode():
            for (_, shape, _, device), layer in layers.items():
                x = torch.randn(rows, 1, shape[1], generator=g, device=device).to(dtype)  # (B, 1, C)
                full = layer(x)
                for n in range(rows - 1, 0, -1):  # down from many: the first size whose rows differ sets the floor
                    if not torch.equal(layer(x[:n]), full[:n]):
                        first = max(first, n + 1)
                        break
        _SHARED_ROWS[key] = first if first <= MAX_PAD else None
    return _SHARED_ROWS[key]


class Batch:
    """Streams decoded together: each step samples one token per stream and feeds them all in one forward.

    Exact by construction: a stream's prefill (and its rebuild past block_size) is always a one-row forward,
    its sampling uses its own settings and generator, and its decoding step has the same shapes alone as in a
    crowd (RowCache; its keys and values are float32, where CPU attention is fastest). All rows share one forward
    where the matmuls give every row the same bits whatever the batch size: measured (min_shared_rows), and a
    batch smaller than that is padded with idle rows (float32 on the CPU here: 1 to 3 rows take another path
    than 4 or more). Where no size does (and on a GPU, not yet measured there) each row gets its own forward.
    """

    def __init__(self, model: GPTLanguageModel, rows: int):
        self.model = model
        self.block_size = model.config.block_size
        param = next(model.parameters())
        self.device = param.device
        self.rows = rows  # streams at most
        self.pad_to = min_shared_rows(model, max(rows, PROBE_ROWS)) if self.device.type == "cpu" else None
        if self.pad_to and self.pad_to > 1 and self.pad_to * cache_bytes(model.config) > PAD_BYTES:
            self.pad_to = None  # a long-context model's idle rows would hold too much memory: a forward per row
        self.together = self.pad_to is not None
        # on the CPU, float32 keys and values whatever the weights: attention over a padded cache is several times
        # faster than in bf16 there (a GPU attends fastest in the weights' own precision)
        cache_dtype = torch.float32 if self.device.type == "cpu" else param.dtype
        self.cache = RowCache(model.config, max(rows, self.pad_to or 1), self.device, cache_dtype)
        self.streams: list[Stream] = []  # stream i lives in cache row i

    @property
    def full(self) -> bool:
        return len(self.streams) == self.rows

    def add(self, stream: Stream) -> None:
        """Join: encode the stream's context in one pass; its first token is sampled at the next step."""
        stream.context = stream.context[-self.block_size:]  # the most the model can look back on
        stream.rebuild = self.block_size // 2 if stream.rebuild is None else stream.rebuild
        self.streams.append(stream)
        stream.logits = self._prefill(len(self.streams) - 1, stream.context)

    def remove(self, stream: Stream) -> None:
        """Leave: the last row moves into the freed one."""
        i, last = self.streams.index(stream), len(self.streams) - 1
        if i != last:
            self.cache.move(last, i)
            self.streams[i] = self.streams[last]
        self.streams.pop()

    @torch.inference_mode()
    def step(self) -> list[tuple[Stream, int]]:
        """One token for every stream; streams that are done leave. Returns (stream, token) pairs."""
        if not self.streams:
            return []
        made = []
        for s, token in zip(self.streams, sample_rows(torch.cat([s.logits for s in self.streams]), self.streams)):
            s.made += 1
            s.context = (s.context + [token])[-self.block_size:]
            made.append((s, token))
        for s in [s for s in self.streams if s.made >= s.max_new_tokens]:
            self.remove(s)
        if not self.streams:
            return made
        for i, (s, pos) in enumerate(zip(self.streams, self.cache.pos.tolist())):
            if pos == self.block_size:
                # window full: no position block_size exists; re-encode the recent context, the newest token
                # joining the step below like every other row's
                self._prefill(i, s.context[-s.rebuild:-1])
        n = len(self.streams)
        idx = [[s.context[-1]] for s in self.streams]
        if self.together and n < self.pad_to:  # idle rows (their outputs are dropped) keep the matmuls' path
            self.cache.pos[n:self.pad_to] = 0
            idx += [[0]] * (self.pad_to - n)
        idx = torch.tensor(idx, dtype=torch.long, device=self.device)  # (rows in the forward, 1)
        spans = [(0, len(idx))] if self.together else [(i, i + 1) for i in range(n)]
        logits = torch.cat([self.model(idx[lo:hi], cache=self.cache.rows(lo, hi))[0][:, -1, :] for lo, hi in spans])
        self.cache.pos[:n] += 1
        for i, s in enumerate(self.streams):
            s.logits = logits[i:i + 1]  # (1, vocab_size)
        return made

    @torch.inference_mode()
    def _prefill(self, row: int, ids: list[int]):
        """A one-row forward of ids into cache row `row`; the logits of its last position, (1, vocab_size)."""
        cache = KVCache(self.model.config, 1, self.device, self.cache.k.dtype)
        if not ids:
            self.cache.fill(row, cache)
            return None
        logits, _ = self.model(torch.tensor([ids], dtype=torch.long, device=self.device), cache=cache)
        self.cache.fill(row, cache)
        return logits[:, -1, :]


def generate_tokens(model: GPTLanguageModel, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
                    top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                    rebuild: int | None = None) -> Iterator[torch.Tensor]:
    """Yield the next token of every row of idx (B, T), shape (B,), max_new_tokens times.

    seed drives a private torch.Generator: the global RNG is never touched.
    """
    check_settings(max_new_tokens, temperature, top_k, top_p, seed=seed)
    block_size = model.config.block_size
    rebuild = block_size // 2 if rebuild is None else rebuild
    if not 1 <= rebuild <= block_size:
        raise SamplingError(f"rebuild must be between 1 and block_size ({block_size}), not {rebuild}")
    if idx.size(0) == 1 and isinstance(model, GPTLanguageModel):
        # one stream: the same code as a crowd's (gpt.engine), so a seed gives the same text alone or in a crowd
        stream = Stream(idx[0].tolist(), max_new_tokens, temperature, top_k, top_p, seed, rebuild, idx.device)
        return (torch.tensor([token], device=idx.device) for token in decode_alone(model, stream))
    return _generate(model, idx, max_new_tokens, temperature, top_k, top_p, seed, rebuild)


def decode_alone(model: GPTLanguageModel, stream: Stream) -> Iterator[int]:
    """A Batch of one: yield the stream's tokens."""
    if stream.max_new_tokens == 0:
        return
    batch = Batch(model, rows=1)
    batch.add(stream)
    while batch.streams:
        for _, token in batch.step():
            yield token


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
    cache = KVCache(model.config, idx.size(0), device, next(model.parameters()).dtype) \
        if isinstance(model, GPTLanguageModel) else None
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
            cache.reset()
            logits, _ = model(context[:, -rebuild:], cache=cache)
        else:
            logits, _ = model(idx_next[:, None], cache=cache)  # one new position


def _prompt_ids(tokenizer: CharTokenizer, prompt: str) -> list[int]:
    if prompt:
        return tokenizer.encode(prompt)
    # empty prompt: start from a newline, as the lecture does (id 0 is '\n' in Tiny Shakespeare)
    return [tokenizer.stoi.get("\n", 0)]


def _tokenizer(model: GPTLanguageModel, tokenizer: CharTokenizer | None) -> CharTokenizer:
    if tokenizer is not None:
        return tokenizer
    if model.vocab is None:
        raise SamplingError("this model has no vocabulary attached; pass tokenizer=CharTokenizer(...)")
    return CharTokenizer(model.vocab)


def encode_prompt(model: GPTLanguageModel, prompt: str, tokenizer: CharTokenizer | None = None):
    """(tokenizer, token ids) of a prompt; UnknownCharactersError names the characters the model does not know."""
    tokenizer = _tokenizer(model, tokenizer)
    return tokenizer, _prompt_ids(tokenizer, prompt)


def stream_text(model: GPTLanguageModel, prompt: str = "", *, max_new_tokens: int = 500, tokenizer: CharTokenizer | None = None,
                **sampling) -> Iterator[str]:
    """Yield the generated text one character at a time (the prompt itself is not repeated)."""
    tokenizer, ids = encode_prompt(model, prompt, tokenizer)
    idx = torch.tensor([ids], dtype=torch.long, device=next(model.parameters()).device)  # (1, T)
    # settings and prompt are checked here, before the first character is asked for
    return (tokenizer.itos[int(t[0])] for t in generate_tokens(model, idx, max_new_tokens, **sampling))


def generate_text(model: GPTLanguageModel, prompt: str = "", *, num_samples: int = 1, max_new_tokens: int = 500,
                  tokenizer: CharTokenizer | None = None, **sampling) -> list[str]:
    """num_samples continuations of prompt, generated together as one batch."""
    check_settings(max_new_tokens, sampling.get("temperature", 1.0), sampling.get("top_k"), sampling.get("top_p"),
                   num_samples, sampling.get("seed"))
    tokenizer = _tokenizer(model, tokenizer)
    device = next(model.parameters()).device
    idx = torch.tensor([_prompt_ids(tokenizer, prompt)] * num_samples, dtype=torch.long, device=device)
    steps = list(generate_tokens(model, idx, max_new_tokens, **sampling))
    if not steps:
        return [""] * num_samples
    out = torch.stack(steps, dim=1)  # (B, max_new_tokens)
    return [tokenizer.decode(row.tolist()) for row in out]
