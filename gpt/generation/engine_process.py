"""Generation for a web server, in a process of its own.

A Python process runs one thread at a time (the GIL). With the engine (gpt.generation.engine) inside the web server's
process, a crowd's decoding steps wait for the interpreter behind every request the server handles, and the
server waits behind the steps. Here the engine runs in a child process, on a core of its own, and the web
server only passes prompts in and characters out (python bench/crowd.py: docs/generate.md, Many visitors at once).

    engines = EngineProcess()
    for ch in engines.stream_text(model, "ROMEO:", max_new_tokens=200, seed=1):
        print(ch, end="")

The child is `python -m gpt.generation.engine_process`, connected back with multiprocessing's authenticated connection.
It gets a copy of each model (config, vocabulary, precision and a safetensors state dict: data, never pickled
code), serves it with gpt.generation.engine.Engine, and drops it when the model is gone here. The same Batch code with
the same thread count: a seed gives the same text here, in the child, alone or in a crowd. Prompts and settings
are checked here, before anything is sent. If the child dies, its readers get an error and the next request
starts another; when this process ends, the child sees its connection close and ends too.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import queue
import subprocess
import sys
import threading
import weakref
from multiprocessing.connection import Client, Listener
from typing import Iterator

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from gpt.config import GPTConfig
from gpt.generation.engine import DONE, THREADS, Engine, engine_for, stream_settings
from gpt.errors import EngineError
from gpt.model import GPTLanguageModel
from gpt.generation.decode import encode_prompt
from gpt.generation.precision import precision, precision_copy

STOPPED = "the generation engine stopped; press Generate again"  # what a visitor reads when the child died

class EngineProcess:
    """The web server's side: starts the child when first needed and streams each request's characters back."""

    def __init__(self):
        self.lock = threading.Lock()
        self.child: _Child | None = None

    def start(self) -> None:
        """Start the child now rather than at the first request (it takes seconds to import torch)."""
        with self.lock:
            self._running()

    def _running(self) -> "_Child":  # under self.lock
        if self.child is None or not self.child.alive:
            self.child = _Child()
        return self.child

    def stream_text(self, model: GPTLanguageModel, prompt: str = "", *, max_new_tokens: int = 500,
                    **sampling) -> Iterator[str]:
        """gpt.generation.decode.stream_text, served by the child. Prompt and settings are checked before it returns.

        A model on a GPU is served by its engine in this process, where a step mostly waits for the GPU."""
        if next(model.parameters()).device.type != "cpu":
            return engine_for(model).stream_text(prompt, max_new_tokens=max_new_tokens, **sampling)
        settings = stream_settings(max_new_tokens, **sampling)
        tokenizer, ids = encode_prompt(model, prompt)
        if max_new_tokens == 0:
            return iter(())
        with self.lock:
            child = self._running()
            stream, out = child.submit(model, ids, max_new_tokens, settings)
        return (tokenizer.itos[token] for token in child.read(stream, out))

    def status(self) -> dict:
        """What the child holds: {"models": n, "streams": n}; None when it is not running."""
        with self.lock:
            child = self.child if self.child is not None and self.child.alive else None
        return child.status() if child is not None else None

    def close(self) -> None:
        """End the child (a later request starts another)."""
        with self.lock:
            if self.child is not None:
                self.child.close()


class _Child:
    """One child process, and what was sent to it."""

    def __init__(self):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # it imports gpt as we do
        try:
            self.process = subprocess.Popen([sys.executable, "-m", "gpt.generation.engine_process"], env=env,
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        except OSError as e:  # e.g. a host that allows no new processes
            raise EngineError(f"the generation engine could not start ({e.strerror or e}); try again") from None
        key = os.urandom(32)
        self.process.stdin.write(key)
        self.process.stdin.close()
        address = self.process.stdout.readline().decode().strip()  # once it listens; empty if it failed
        self.process.stdout.close()
        if not address:
            self.process.wait()
            raise EngineError("the generation engine could not start (see the server's log); try again")
        self.conn = Client(address, authkey=key)
        self.send_lock = threading.Lock()
        self.readers: dict[int, queue.SimpleQueue] = {}  # stream -> its chunks of tokens, then None or an error
        self.keys: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its number in the child
        self.gone: list[int] = []  # numbers of models collected here since the last message
        self.numbers = itertools.count()
        self.dead = False
        threading.Thread(target=self._receive, name="gpt-engine-process", daemon=True).start()

    @property
    def alive(self) -> bool:
        return not self.dead and self.process.poll() is None

    def _send(self, message) -> None:
        with self.send_lock:
            try:
                while self.gone:  # models collected here: the child lets go of them too
                    self.conn.send(("drop", self.gone.pop()))
                self.conn.send(message)
            except (OSError, ValueError):  # the child is gone: _receive tells the readers
                self.dead = True

    def submit(self, model: GPTLanguageModel, ids: list[int], max_new_tokens: int, settings: dict):
        key = self.keys.get(model)
        if key is None:
            key = self.keys[model] = next(self.numbers)
            weakref.finalize(model, self.gone.append, key)  # never sends itself: it may run in any thread
            self._send(("model", key, packed(model)))
        stream = next(self.numbers)
        self.readers[stream] = out = queue.SimpleQueue()
        self._send(("start", key, stream, ids, max_new_tokens, settings))
        if self.dead:
            out.put(EngineError(STOPPED))
        return stream, out

    def read(self, stream: int, out: queue.SimpleQueue) -> Iterator[int]:
        finished = False
        try:
            while (item := out.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield from item
            finished = True
        finally:  # done, or the reader stopped (Stop generating): the stream leaves the child's batch
            self.readers.pop(stream, None)
            if not finished and not self.dead:
                self._send(("stop", stream))

    def status(self) -> dict:
        answer = self.readers[-1] = queue.SimpleQueue()
        self._send(("status",))
        try:
            result = answer.get(timeout=30)
        finally:
            self.readers.pop(-1, None)
        return None if isinstance(result, BaseException) else result

    def close(self) -> None:
        self._send(("quit",))  # (closing the connection here would not wake _receive, nor tell the child)
        self.dead = True
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def _receive(self) -> None:
        try:
            while True:
                stream, item = self.conn.recv()
                out = self.readers.get(stream)
                if out is not None:
                    out.put(item)
        except Exception:  # the child ended (EOFError) or sent nonsense: never leave a reader waiting
            self.dead = True
            if self.process.poll() is None:
                self.process.kill()
            for out in list(self.readers.values()):
                out.put(EngineError(STOPPED))


def packed(model: GPTLanguageModel) -> dict:
    """What the child needs to build the same model: config, vocabulary, precision and weights (bytes)."""
    return {"config": dataclasses.asdict(model.config), "vocab": model.vocab, "precision": precision(model),
            "state": save_tensors({k: v.contiguous() for k, v in model.state_dict().items()})}


def unpacked(message: dict) -> GPTLanguageModel:
    model = GPTLanguageModel(GPTConfig(**message["config"]), message["vocab"]).eval()
    model = precision_copy(model, message["precision"])  # the same modules (int8 layers where they were)
    model.load_state_dict(load_tensors(message["state"]))
    return model


class _Out:
    """Where the child's Engine puts a stream's chunks: straight back to the web server."""

    def __init__(self, stream: int, conn, lock: threading.Lock, streams: dict):
        self.stream, self.conn, self.lock, self.streams = stream, conn, lock, streams
        self.ended = False

    def put(self, item) -> None:
        if item is DONE:
            item = None
        elif isinstance(item, BaseException):  # an error of this package's, which the server can unpickle
            item = EngineError(f"generation failed: {item}")
        with self.lock:
            if item is None or isinstance(item, BaseException):
                self.ended = True
                self.streams.pop(self.stream, None)
            try:
                self.conn.send((self.stream, item))
            except (OSError, ValueError):
                pass  # the server is gone: so will this process be


def serve(conn) -> None:
    """The child's loop: models in, streams started and stopped; every Engine's thread sends chunks back."""
    engines: dict[int, Engine] = {}
    streams: dict[int, tuple] = {}  # stream -> (engine, its gpt.generation.decode.Stream) while it runs
    lock = threading.Lock()  # one sender at a time
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the web server is gone
        kind = message[0]
        if kind == "quit":
            return
        if kind == "model":
            try:
                engines[message[1]] = Engine(unpacked(message[2]))
            except Exception as e:  # its streams get the error
                engines[message[1]] = e
        elif kind == "drop":
            engines.pop(message[1], None)  # streams still running keep their engine until they end
        elif kind == "start":
            _, key, stream, ids, max_new_tokens, settings = message
            out = _Out(stream, conn, lock, streams)
            try:
                engine = engines[key]
                if isinstance(engine, Exception):
                    raise engine
                s = engine.submit(ids, max_new_tokens, out, **settings)
            except Exception as e:  # checked by the server already; never leave its reader waiting
                out.put(e)
                continue
            with lock:
                if not out.ended:  # (a short one may be done already)
                    streams[stream] = (engine, s)
        elif kind == "stop":
            engine, s = streams.pop(message[1], None) or (None, None)
            if engine is not None:
                engine.leave(s)
        elif kind == "status":
            with lock:
                conn.send((-1, {"models": len(engines), "streams": len(streams)}))


def main() -> None:
    key = sys.stdin.buffer.read()
    torch.set_num_threads(THREADS)  # a core's worth: the web server and a training run have the other
    with Listener(authkey=key) as listener:  # a Unix socket (a named pipe on Windows): this machine only
        print(listener.address, flush=True)
        conn = listener.accept()
    serve(conn)


if __name__ == "__main__":
    main()
