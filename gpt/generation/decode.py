"""Generation: one character at a time, streaming, with a KV cache; one stream or many, in one loop.

The prompt is encoded once (prefill); each later step feeds only the newest token. Positions are learned only
up to block_size, so when the window is full the cache is rebuilt from the most recent `rebuild` tokens
(default block_size // 2) and generation goes on: the context then grows again from rebuild to block_size.
rebuild=block_size re-encodes the full window at every step: exactly the lecture's `idx[:, -block_size:]`.

Every row is a Stream decoded by a Batch: a single stream is a Batch of one, several samples a Batch of
several, and gpt.generation.engine runs the same Batch for many visitors at once, so a stream's tokens never depend on
what else is in its batch. Sample i of several is the single stream of seed + i.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn as nn

from gpt.config import MAX_SEED
from gpt.errors import SamplingError
from gpt.generation.int8 import Int8Linear
from gpt.generation.kv_cache import KVCache, RowCache
from gpt.memory import cache_bytes
from gpt.model import GPTLanguageModel
from gpt.generation.sampling import Settings, check_request, sample, seeded
from gpt.tokenizer import CharTokenizer


class Stream:
    """One request: its context, its sampling settings and its own random generator (the seed's)."""

    def __init__(self, context: list[int], max_new_tokens: int, *, seed: int | None = None,
                 rebuild: int | None = None, device=None, **settings):
        self.context = list(context)  # the last block_size tokens at most
        self.max_new_tokens = max_new_tokens
        self.settings = Settings(**settings)  # temperature, top_k, top_p
        self.rebuild = rebuild
        self.generator = seeded(seed, device)
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
        for s, token in zip(self.streams, self._sample()):
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

    def _sample(self) -> list[int]:
        streams = self.streams
        return sample(torch.cat([s.logits for s in streams]), [s.settings for s in streams],
                      [s.generator for s in streams])

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


def generate_tokens(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, *, seed: int | None = None,
                    rebuild: int | None = None, **settings) -> Iterator[torch.Tensor]:
    """Yield the next token of every row of idx (B, T), shape (B,), max_new_tokens times.

    settings: temperature, top_k, top_p (generation.sampling.Settings). Row i draws from its own generator, seeded with
    seed + i: the global RNG is never touched. Everything is checked before this returns.
    """
    check_request(max_new_tokens, seed)
    settings = Settings(**settings)
    block_size = model.config.block_size
    rebuild = block_size // 2 if rebuild is None else rebuild
    if not 1 <= rebuild <= block_size:
        raise SamplingError(f"rebuild must be between 1 and block_size ({block_size}), not {rebuild}")
    seeds = [None if seed is None else (seed + i) % (MAX_SEED + 1) for i in range(idx.size(0))]
    if isinstance(model, GPTLanguageModel):
        streams = [Stream(row.tolist(), max_new_tokens, seed=s, rebuild=rebuild, device=idx.device,
                          **vars(settings)) for row, s in zip(idx, seeds)]
        return _decode(model, streams, idx.device)
    return _recompute(model, idx, max_new_tokens, settings, seeds)


def _decode(model: GPTLanguageModel, streams: list[Stream], device) -> Iterator[torch.Tensor]:
    """The streams decoded as one Batch (they all make the same number of tokens): (B,) per step."""
    if not streams or streams[0].max_new_tokens == 0:
        return
    batch = Batch(model, rows=len(streams))
    for s in streams:
        batch.add(s)
    row = {id(s): i for i, s in enumerate(streams)}
    while batch.streams:
        tokens = [0] * len(streams)
        for s, token in batch.step():
            tokens[row[id(s)]] = token
        yield torch.tensor(tokens, device=device)


@torch.inference_mode()
def _recompute(model: nn.Module, idx, max_new_tokens: int, settings: Settings, seeds: list[int | None]):
    """The lecture ladder's early models have no cache: they recompute the window, as the lecture's generate does."""
    block_size = model.config.block_size
    generators = [seeded(s, idx.device) for s in seeds]
    context = idx[:, -block_size:]  # (B, T) the most the model can look back on
    for _ in range(max_new_tokens):
        logits, _ = model(context)
        idx_next = torch.tensor(sample(logits[:, -1, :], [settings] * len(generators), generators),
                                device=idx.device)  # (B,)
        yield idx_next
        context = torch.cat((context, idx_next[:, None]), dim=1)[:, -block_size:]  # (B, <=block_size)


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
    """num_samples continuations of prompt, generated together as one batch (sample i: the stream of seed + i)."""
    check_request(max_new_tokens, sampling.get("seed"), num_samples)
    tokenizer = _tokenizer(model, tokenizer)
    device = next(model.parameters()).device
    idx = torch.tensor([_prompt_ids(tokenizer, prompt)] * num_samples, dtype=torch.long, device=device)
    steps = list(generate_tokens(model, idx, max_new_tokens, **sampling))
    if not steps:
        return [""] * num_samples
    out = torch.stack(steps, dim=1)  # (B, max_new_tokens)
    return [tokenizer.decode(row.tolist()) for row in out]
