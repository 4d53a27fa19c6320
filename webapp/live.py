"""What every open page listens to: one small stream, `/live` (server-sent events), that says when what the Train
and Ladder tabs show has changed, so that a page asks Gradio for the new view only then.

Gradio has no broadcast to all sessions, and a poll through its queue costs the server about 17 ms of CPU: one a
second from every open tab made a crowd of idle tabs expensive. Now a tab polls through Gradio only while it
shows something moving (a live run, a climb, the replay it is playing: its gr.Timer is active then) and is woken
by this stream when a run starts, is evaluated or ends, anywhere. webapp/live.js is the page's side.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from gpt import runlog
from webapp import access
from webapp.state import WEIGHTS, runner

CHECK_S = 1.0  # how often a stream looks for a change: a run started elsewhere appears within about a second
DISK_S = 5.0  # how often the weights folder is looked at for a run written by another process (a command line)
KEEPALIVE_S = 20.0  # a comment now and then keeps an idle stream open through proxies
RETRY_MS = 2000  # how soon a page that lost the server tries again
MAX_LISTENERS = 1000  # streams open at once; a page beyond them still works, it is told of runs on reload
_listeners = 0
_disk = {"at": -DISK_S, "newest": None}


def newest_on_disk() -> int | None:
    """When the newest run log in weights/ last changed (read at most every DISK_S, whoever asks)."""
    now = time.monotonic()
    if now - _disk["at"] >= DISK_S:
        try:
            _disk["newest"] = max((runlog.changed_ns(p) for p in WEIGHTS.iterdir()
                                   if p.name != "default" and runlog.exists(p)), default=None)
        except OSError:
            _disk["newest"] = None
        _disk["at"] = now
    return _disk["newest"]


def version() -> str:
    """A short token that changes when the tabs' view does: a run starts, is evaluated, ends; a rung of a climb
    moves on; a run appears on disk. Not at every step: a page that shows a live run polls it every second."""
    parts = (runner.state, str(runner.out_dir), len(runner.evals), runner.interrupted is not None,
             tuple(row["state"] for row in list(runner.ladder)),
             # with no run of its own, a laptop's page shows the newest on disk (a public page never shows past runs)
             newest_on_disk() if runner.state == "idle" and not access.current().public else None)
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:12]


async def live_route(request: Request) -> Response:
    global _listeners
    if _listeners >= MAX_LISTENERS:
        return PlainTextResponse("too many pages are listening; reload later", status_code=503)

    async def stream():
        global _listeners
        _listeners += 1
        try:
            yield f"retry: {RETRY_MS}\n\n"
            last, quiet = None, 0.0
            while True:
                now = version()
                if now != last:
                    last, quiet = now, 0.0
                    yield f"data: {now}\n\n"
                elif quiet >= KEEPALIVE_S:
                    quiet = 0.0
                    yield ": still here\n\n"
                await asyncio.sleep(CHECK_S)
                quiet += CHECK_S
        finally:  # the page went away (Starlette cancels the stream when the client disconnects)
            _listeners -= 1

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def calm_queue(demo) -> None:
    """Gradio's queue looks for work every millisecond while it has none, and for progress every 10 ms
    (gradio/queueing.py: sleep_when_free): 0.05 CPU-s/s of an app that nobody uses. Every 20 ms and 100 ms
    instead: an event waits at most 20 ms longer to start."""
    queue = demo._queue
    assert hasattr(queue, "sleep_when_free") and hasattr(queue, "progress_update_sleep_when_free"), \
        "gradio's queue changed: see webapp/live.py calm_queue"
    queue.sleep_when_free, queue.progress_update_sleep_when_free = 0.02, 0.1


ROUTES = [Route("/live", live_route)]
REFRESH_JS = "() => { window.gptLive?.refresh(); }"  # .then() of a Start or Stop: this page's view at once
