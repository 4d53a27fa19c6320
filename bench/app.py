"""The app's figures: start-up, responsiveness while training, generation speed.

    python bench/app.py [--json bench/results/app.json]

Starts `python app.py` on a free port with a scratch weights folder (a copy of weights/default) and measures:
time from launch to the first answered API request; /training_status latency while idle and while the `cpu`
preset trains; how long after a training step a viewer sees it; generation tokens/s with the default weights,
idle and while training.

How long a step takes to show: the trainer appends every step to weights/<run>/metrics.jsonl as it finishes
it; a thread here reads that file every 5 ms and notes when each step appears. A client polls
/training_status once a second, as every tab's gr.Timer does (the chart is drawn from the same runner.status()),
and for each step we take the time until the first answer that included it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
from gradio_client import Client  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import serve  # noqa: E402  the app started and waited for, as the tests start it


def latencies(client, n=20, pause=0.25) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        client.predict(api_name="/training_status")
        out.append(time.perf_counter() - t)
        time.sleep(pause)
    return out


def watch_steps(metrics: Path, seen: dict[int, float], stop: threading.Event) -> None:
    """seen[step] = when the step's line appeared in metrics.jsonl (read every 5 ms)."""
    offset, partial = 0, b""
    while not stop.is_set():
        if metrics.exists():
            with open(metrics, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            now = time.perf_counter()
            offset += len(chunk)
            *lines, partial = (partial + chunk).split(b"\n")
            for line in lines:
                event = json.loads(line)
                if event["event"] == "step":
                    seen.setdefault(event["step"], now)
        time.sleep(0.005)


def step_delays(client, metrics: Path, polls=30, period=1.0) -> tuple[list[float], list[float]]:
    """(for each step: seconds until a poll first showed it, for each poll: the age of the step it showed)."""
    seen, stop = {}, threading.Event()
    watcher = threading.Thread(target=watch_steps, args=(metrics, seen, stop), daemon=True)
    watcher.start()
    time.sleep(2 * period)  # the watcher has caught up with the file
    answers = []  # (when the answer arrived, the step it showed)
    next_tick = time.perf_counter()
    for _ in range(polls):
        next_tick += period
        step = client.predict(api_name="/training_status")["step"]
        answers.append((time.perf_counter(), step))
        time.sleep(max(0.0, next_tick - time.perf_counter()))
    stop.set()
    watcher.join()
    start_step = answers[0][1]
    delays = []
    for step, written in seen.items():
        shown = next((t for t, s in answers if s >= step), None)
        if step > start_step and shown is not None:
            delays.append(shown - written)
    ages = [t - seen[s] for t, s in answers[1:] if s in seen]
    return delays, ages


def generation_rate(client, n=500) -> float:
    t = time.perf_counter()
    text, _ = client.predict("default", "ROMEO:", n, 0.8, 40, 1.0, 1, api_name="/generate")
    return (len(text) - len("ROMEO:")) / (time.perf_counter() - t)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "app.json")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp())
    shutil.copytree(ROOT / "weights" / "default", scratch / "default")
    started = time.perf_counter()
    app = serve.start(weights=scratch)
    try:
        client = Client(app.url, analytics_enabled=False, verbose=False)
        client.predict(api_name="/training_status")
        figures = {"startup_to_first_answer_s": time.perf_counter() - started}
        figures["status_latency_idle_ms"] = statistics.median(latencies(client)) * 1000
        generation_rate(client, 50)  # load the weights once
        figures["generate_tokens_per_s_idle"] = statistics.median(generation_rate(client) for _ in range(3))
        defaults = json.loads((ROOT / "weights" / "default" / "config.json").read_text())
        message = client.predict("cpu", 4, 4, 128, 64, 32, 3.5e-3, 100_000, 0.0, 500, 1337, "Tiny Shakespeare", None,
                                 "bench", api_name="/start_training")
        assert message.startswith("Started"), message
        time.sleep(5)
        lat = latencies(client, n=40)
        figures["status_latency_training_ms_median"] = statistics.median(lat) * 1000
        figures["status_latency_training_ms_max"] = max(lat) * 1000
        delays, ages = step_delays(client, scratch / "bench" / "metrics.jsonl")
        figures["step_to_viewer_s_median"] = statistics.median(delays)
        figures["step_to_viewer_s_max"] = max(delays)
        figures["step_age_when_shown_s_median"] = statistics.median(ages)
        figures["step_age_when_shown_s_max"] = max(ages)
        figures["generate_tokens_per_s_while_training"] = statistics.median(generation_rate(client) for _ in range(3))
        status = client.predict(api_name="/training_status")
        figures["training_tokens_per_s_with_app"] = status["tokens_per_sec"]
        client.predict(api_name="/stop_training")
        figures["default_weights"] = f"{defaults['n_layer']} layers, {defaults['n_embd']} wide, block {defaults['block_size']}"
    finally:
        app.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    for k, v in figures.items():
        print(f"{k:40s} {v:,.2f}" if isinstance(v, float) and v < 100 else
              f"{k:40s} {v:,.0f}" if isinstance(v, float) else f"{k:40s} {v}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
