"""Start the app (or any server) on a free port and wait until it answers: the one start-up that the tests and the
benches share. Plain Python, no test framework: bench/ imports it too (as it does tests/browser_setup.py).

    with serving(weights=folder / "weights", log=folder / "app.log") as app:   # python app.py --port N
        Client(app.url)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    port: int
    log: Path | None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it and what it started (its process group); killed if it has not gone in 30 s."""
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass  # gone already
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def start(command: list[str] | None = None, *, weights: Path | None = None, env: dict | None = None,
          cwd: Path = ROOT, log: Path | None = None, port: int | None = None, timeout: float = 120) -> Server:
    """Run command (default: `python app.py --port N`, as a user starts the app; any command gets the port as $PORT
    and $GRADIO_SERVER_PORT) with weights as its weights folder, and wait until its page answers.

    env: more variables (None removes one); log: where its output goes (None: nowhere). A RuntimeError with the log
    if it exits or does not answer within timeout seconds."""
    port = port or free_port()
    command = command or [sys.executable, "app.py", "--port", str(port)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PORT": str(port), "GRADIO_SERVER_PORT": str(port),
           **({"GPT_WEIGHTS_DIR": str(weights)} if weights else {}), **(env or {})}
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(command, cwd=cwd, env={k: v for k, v in env.items() if v is not None}, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    if log:
        out.close()  # the child has its own copy
    server = Server(proc, f"http://127.0.0.1:{port}/", port, log)
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(server.url, timeout=2)
            return server
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                server.stop(signal.SIGKILL)
                said = log.read_text(errors="replace")[-4000:] if log else "(no log kept)"
                raise RuntimeError(f"{' '.join(command[:4])} did not start: {said}") from None
            time.sleep(0.2)


@contextmanager
def serving(command: list[str] | None = None, **options) -> Iterator[Server]:
    """start(), and stop() on leaving."""
    server = start(command, **options)
    try:
        yield server
    finally:
        server.stop()
