"""Generation for a crowd: one engine per loaded model, one thread, every visitor's stream in one batch.

Requests join and leave the running batch between two steps ("continuous batching", as LLM servers do); each
step samples one token for every stream and feeds them all through one forward pass. One step over twenty
rows costs about three times one row's, not twenty times: a one-row step is mostly per-step overhead.

    engine = engine_for(model)
    for ch in engine.stream_text("ROMEO:", max_new_tokens=200, temperature=0.8, seed=1):
        print(ch, end="")

Each stream keeps its own settings and random generator, and the step is gpt.generation.decode.Batch, the code the
single-stream sampler runs too: a seed gives the same text alone, in a crowd, or from stream_text.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import torch

from gpt.memory import cache_bytes
from gpt.model import GPTLanguageModel
from gpt.generation.decode import Batch, Stream, encode_prompt
from gpt.generation.sampling import Settings, check_request

MAX_STREAMS = 64  # rows of the batch; later requests wait for a row to free up
CACHE_BYTES = 512 * 2**20  # fewer rows for a big model: its keys and values stay within this
THREADS = 1  # torch threads of the engine's thread: on 2 cores the web server and a training run need the other
CHUNK_S = 0.05  # a reader gets its new tokens at most this often: one wake-up per chunk, not per token, so twenty
# readers do not take the engine's turns on the interpreter
DONE = object()  # the end of a stream, after its last chunk


class Engine:
    """A thread that advances every active stream of one model by one token per batched forward pass."""

    def __init__(self, model: GPTLanguageModel, max_streams: int = MAX_STREAMS, threads: int = THREADS):
        self.model = model
        rows = max(1, min(max_streams, CACHE_BYTES // cache_bytes(model.config)))
        # built under the engine's thread count: whether rows can share a forward depends on it (Batch)
        self.batch = with_threads(threads, lambda: Batch(model, rows))
        self.threads = threads
        self.waiting: list[Request] = []  # joined since the last step
        self.leaving: set[Request] = set()  # stopped by their reader
        self.lock = threading.RLock()  # a reader closed by the garbage collector may take it in any thread
        self.thread: threading.Thread | None = None

    @property
    def active(self) -> int:
        """Streams being generated or waiting to join."""
        with self.lock:
            return len(self.batch.streams) + len(self.waiting)

    def stream_text(self, prompt: str = "", *, max_new_tokens: int = 500, **sampling) -> Iterator[str]:
        """decode.stream_text, served by this engine. Prompt and settings are checked before it returns."""
        tokenizer, ids = encode_prompt(self.model, prompt)
        return (tokenizer.itos[t] for t in self.stream_tokens(ids, max_new_tokens, **sampling))

    def stream_tokens(self, ids: list[int], max_new_tokens: int, **settings) -> Iterator[int]:
        """The stream's tokens as they are made (settings: temperature, top_k, top_p, seed, rebuild; checked here)."""
        stream = self.submit(ids, max_new_tokens, queue.SimpleQueue(), **settings)
        return self._read(stream)

    def submit(self, ids: list[int], max_new_tokens: int, out, **settings) -> Stream:
        """Join the batch: out.put() gets the stream's tokens in chunks (lists), then DONE, or the error that
        stopped the batch. Settings are checked before anything starts (stream_settings)."""
        stream = Request(ids, max_new_tokens, out, **stream_settings(max_new_tokens, **settings))
        if max_new_tokens == 0:
            out.put(DONE)
            return stream
        with self.lock:
            self.waiting.append(stream)
            if self.thread is None:  # the thread ends when nobody is left: start it again
                self.thread = threading.Thread(target=self._run, name="gpt-engine", daemon=True)
                self.thread.start()
        return stream

    def leave(self, stream: Stream) -> None:
        """Stop a stream (its reader went away): it leaves the batch at the next step."""
        with self.lock:
            self.leaving.add(stream)

    def _read(self, stream: Stream) -> Iterator[int]:
        try:
            while (item := stream.out.get()) is not DONE:
                if isinstance(item, BaseException):
                    raise item
                yield from item
        finally:  # finished, or the reader stopped (closed the generator): leave the batch at the next step
            self.leave(stream)

    def _run(self) -> None:
        use_threads(self.threads)
        batch = self.batch
        while True:
            with self.lock:
                for s in [s for s in batch.streams if s in self.leaving]:
                    batch.remove(s)
                self.waiting = [s for s in self.waiting if s not in self.leaving]
                self.leaving.clear()
                joining = []
                while self.waiting and len(batch.streams) + len(joining) < batch.rows:
                    joining.append(self.waiting.pop(0))
                if not batch.streams and not joining:
                    self.thread = None
                    return
            try:
                for s in joining:
                    batch.add(s)
                made, now = batch.step(), time.perf_counter()
                for s, token in made:
                    s.chunk.append(token)
                    done = s.made >= s.max_new_tokens
                    if done or now - s.sent >= CHUNK_S:  # the first token goes out at once
                        s.out.put(s.chunk)
                        s.chunk, s.sent = [], now
                    if done:
                        s.out.put(DONE)
            except Exception as e:  # never leave a reader waiting: everyone in the batch gets the error
                for s in list(batch.streams) + joining:
                    s.out.put(e)
                    if s in batch.streams:
                        batch.remove(s)


class Request(Stream):
    """A stream and where its tokens go: out.put() gets them in chunks, at most every CHUNK_S."""

    def __init__(self, ids: list[int], max_new_tokens: int, out, **settings):
        super().__init__(ids, max_new_tokens, **settings)
        self.out, self.chunk, self.sent = out, [], 0.0  # the queue, tokens not yet sent, when the last chunk went


def stream_settings(max_new_tokens: int, *, seed: int | None = None, rebuild: int | None = None,
                    **settings) -> dict:
    """A stream's settings (sampling.Settings, seed, rebuild), checked: a SamplingError says what is wrong,
    an unknown one is a TypeError."""
    check_request(max_new_tokens, seed)
    return dict(vars(Settings(**settings)), seed=seed, rebuild=rebuild)


def use_threads(n: int) -> None:
    """torch's thread count for the calling thread only.

    torch.set_num_threads also becomes the count of threads started later (a training run's, say): put that
    back from a helper thread, which leaves this thread's own count as set.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    helper = threading.Thread(target=torch.set_num_threads, args=(before,))
    helper.start()
    helper.join()


def with_threads(n: int, fn):
    """fn() called in a thread of its own that has n torch threads, as the engine's thread will; its result (or
    its error, raised here)."""
    def run():
        use_threads(n)
        return fn()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


_engines: dict[int, Engine] = {}
_engines_lock = threading.Lock()


def engine_for(model: GPTLanguageModel) -> Engine:
    """The engine of a loaded model (one per model object; the latest few are kept, as gpt.sharing.pretrained does)."""
    with _engines_lock:
        engine = _engines.get(id(model))
        if engine is None or engine.model is not model:
            for old in list(_engines)[:-4]:
                if _engines[old].active == 0:
                    _engines.pop(old)
            engine = _engines[id(model)] = Engine(model)
        return engine
