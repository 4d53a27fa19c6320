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
import json
import time
from typing import Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from gpt.training import log as runlog
from webapp import access
from webapp.state import WEIGHTS, runner

CHECK_S = 1.0  # how often the view is looked at, for all streams: a run started elsewhere shows within a second
DISK_S = 5.0  # how often the weights folder is looked at for a run written by another process (a command line)
KEEPALIVE_S = 20.0  # a comment now and then keeps an idle stream open through proxies
RETRY_MS = 2000  # how soon a page that lost the server tries again
MAX_LISTENERS = 1000  # streams open at once; a page beyond them still works, it is told of runs on reload
CROWD_POLLS_S = 2.0  # a moving view's polls through Gradio, all open pages together: about this many a second at most
_listeners = 0
_disk = {"at": -DISK_S, "newest": None}
_progress: Callable[[], str | None] = lambda: None  # the Train tab's progress line of a live run (routes())


def every(seconds: float) -> float:
    """How often each page asks Gradio for a moving view (a live run's chart, a climb): every `seconds`, or less
    often while a crowd watches. A poll through Gradio's queue costs the server CPU (about 17 ms for an idle one),
    which a live run shares; the progress line still comes to every page each second, from this stream."""
    return max(seconds, _listeners / CROWD_POLLS_S)


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
    run = runner.run
    parts = (run.state, str(run.folder), len(run.evals), runner.interrupted is not None,
             tuple((rung.state, rung.ended) for _, rung in list(runner.ladder)),
             # with no run of its own, a laptop's page shows the newest on disk (a public page never shows past runs)
             newest_on_disk() if run.state == "idle" and not access.current().public else None)
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:12]


class Changes:
    """One look a second at version(), for every open stream at once: a stream sleeps until the view changes (or
    KEEPALIVE_S passes), so a crowd of idle pages costs the server one look a second in all."""

    def __init__(self):
        self.message = self.look()
        self.changed = asyncio.Event()  # set when the message changes, then replaced by a fresh one
        self.watcher: asyncio.Task | None = None

    @staticmethod
    def look() -> str:
        """What every page is told: the view's version and, while a run is live, its progress line (sent to all
        from here once a second, so that a live run's viewers do not each ask Gradio for it)."""
        return json.dumps({"version": version(), "progress": _progress() if runner.running else None})

    def start(self) -> None:
        if self.watcher is None or self.watcher.done():  # nobody was listening: what is true now, then watch
            self.message = self.look()
            self.watcher = asyncio.get_running_loop().create_task(self.watch())

    async def watch(self) -> None:
        while _listeners:
            await asyncio.sleep(CHECK_S)
            now = self.look()
            if now != self.message:
                self.message, changed, self.changed = now, self.changed, asyncio.Event()
                changed.set()


_changes: Changes | None = None


async def live_route(request: Request) -> Response:
    global _listeners, _changes
    if _listeners >= MAX_LISTENERS:
        return PlainTextResponse("too many pages are listening; reload later", status_code=503)
    _changes = _changes or Changes()

    async def stream():
        global _listeners
        _listeners += 1
        _changes.start()
        try:
            yield f"retry: {RETRY_MS}\n\n"
            while True:
                changed = _changes.changed
                yield f"data: {_changes.message}\n\n"
                while not changed.is_set():
                    try:
                        await asyncio.wait_for(changed.wait(), KEEPALIVE_S)
                    except asyncio.TimeoutError:
                        yield ": still here\n\n"
        finally:  # the page went away (Starlette cancels the stream when the client disconnects)
            _listeners -= 1

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def calm_queue(demo) -> None:
    """Gradio's queue looks for work every millisecond while it has none, and for progress every 10 ms
    (gradio/queueing.py: sleep_when_free): 0.05 CPU-s/s of an app that nobody uses. Every 50 ms and 100 ms
    instead, as Gradio does on Windows: an event waits at most 50 ms longer to start."""
    queue = demo._queue
    assert hasattr(queue, "sleep_when_free") and hasattr(queue, "progress_update_sleep_when_free"), \
        "gradio's queue changed: see webapp/live.py calm_queue"
    queue.sleep_when_free, queue.progress_update_sleep_when_free = 0.05, 0.1


def routes(progress: Callable[[], str | None]) -> list[Route]:
    """/live, for the app's routes; progress: the Train tab's progress line while a run is live, else None."""
    global _progress
    _progress = progress
    return [Route("/live", live_route)]


REFRESH_JS = "() => { window.gptLive?.refresh(); }"  # .then() of a Start or Stop: this page's view at once
