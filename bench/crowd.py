"""Generation for a crowd: one visitor alone against twenty at once, idle and while a run trains.

    python bench/crowd.py [--clients 20] [--chars 200] [--rounds 2] [--json bench/results/crowd.json]

Starts `python app.py` on a free port (a scratch copy of weights/default) and drives it as visitors do, through
gradio_client's /generate, each visitor with its own client, prompt, settings and seed, asking for 200
characters. Rounds alternate one visitor alone and the crowd (the same requests, all released at once), so
both sides see the same moods of the machine; then the `cpu` preset starts training and the crowd comes back.
Prints time to first character, p50/p95/max latency of a request, aggregate characters/s, the training run's
tokens/s with and without the crowd, and the machine's load (`/proc/loadavg`).

Each visitor has a session on the server before the rounds start, as a visitor does once the page has loaded
(building one takes the server about 16 ms of Python for this app's 150 components; gradio_client would otherwise
make it with its first request). The visitors' clients run on the server's own two cores, so they are kept light:
each looks at its job every 10 ms (iterating a gradio_client job polls every millisecond), and `ssl_verify=False`
(the URL is plain http on this machine; otherwise gradio_client builds an SSL context, tens of milliseconds of CPU,
for each HTTP call).
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
PROMPTS = ["ROMEO:", "JULIET:\nO", "First Citizen:\n", "KING RICHARD III:\nNow is the winter", "", "To be, or not",
           "HAMLET:", "MENENIUS:\nWhy, masters", "O", "Good morrow, cousin.\n"]
SETTINGS = [(0.8, 40, 1.0), (1.0, 0, 1.0), (0.0, 0, 1.0), (0.9, 0, 0.9), (0.7, 20, 0.95)]  # temperature, top_k, top_p


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def request(i: int, chars: int) -> tuple:
    temperature, top_k, top_p = SETTINGS[i % len(SETTINGS)]
    return ("default", PROMPTS[i % len(PROMPTS)], chars, temperature, top_k, top_p, 1000 + i)


def visit(client: Client, args: tuple, start: float, out: dict) -> None:
    """One visitor: time to the first character, time to the whole text, and the text."""
    first = None
    job = client.submit(*args, api_name="/generate")
    while not job.done():  # look every 10 ms: iterating a job polls every millisecond, on the server's cores
        if first is None and any(len(text) > len(args[1]) for text, _ in job.outputs()):
            first = time.perf_counter() - start
        time.sleep(0.01)
    text = job.outputs()[-1][0]
    first = first or time.perf_counter() - start
    out.update(first=first, latency=time.perf_counter() - start, chars=len(text) - len(args[1]), text=text)


def crowd(clients: list[Client], chars: int, offset: int = 0) -> list[dict]:
    """Every client sends its request at the same moment; returns one dict per request."""
    results = [{} for _ in clients]
    gate = threading.Barrier(len(clients) + 1)
    start = [0.0]

    def run(i):
        gate.wait()
        visit(clients[i], request(offset + i, chars), start[0], results[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    start[0] = time.perf_counter()
    gate.wait()
    for t in threads:
        t.join()
    wall = max(r["latency"] for r in results)
    for r in results:
        r["wall"] = wall
    return results


def summary(results: list[dict]) -> dict:
    lat = sorted(r["latency"] for r in results)
    p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
    return {"clients": len(results), "first_char_s_median": statistics.median(r["first"] for r in results),
            "first_char_s_max": max(r["first"] for r in results), "latency_s_p50": statistics.median(lat),
            "latency_s_p95": p95, "latency_s_max": lat[-1],
            "chars_per_s_total": sum(r["chars"] for r in results) / results[0]["wall"],
            "all_complete": all(r["chars"] == results[0]["chars"] for r in results)}


def training_rate(client: Client, seconds: float) -> list[float]:
    """The run's tokens/s as /training_status reports it, twice a second for `seconds`."""
    rates, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        rate = client.predict(api_name="/training_status").get("tokens_per_sec")
        if rate:
            rates.append(rate)
        time.sleep(0.5)
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20, help="visitors at once (default: 20)")
    parser.add_argument("--chars", type=int, default=200, help="characters each visitor asks for (default: 200)")
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds of alone / crowd (default: 2)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "crowd.json")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp())
    shutil.copytree(ROOT / "weights" / "default", scratch / "default")
    figures = {"load_at_start": load()}
    app = serve.start(weights=scratch, timeout=180)
    try:
        clients = [Client(app.url, analytics_enabled=False, verbose=False, ssl_verify=False)
                   for _ in range(args.clients)]
        crowd(clients[:1], 20)  # load the weights and start the engine once
        for client in clients:  # each visitor has opened the page: the server holds its session already
            client.predict(api_name="/training_status")
        alone, many = [], []
        for _ in range(args.rounds):  # alternate: alone, crowd, alone, crowd
            alone += crowd(clients[:1], args.chars)
            many.append(crowd(clients, args.chars))
        figures["alone"] = summary(alone)
        figures["alone"]["chars_per_s_total"] = statistics.median(r["chars"] / r["latency"] for r in alone)
        figures["crowd"] = min((summary(m) for m in many), key=lambda s: s["chars_per_s_total"])  # the worse round
        figures["crowd_rounds_chars_per_s"] = [summary(m)["chars_per_s_total"] for m in many]
        # a seeded text does not depend on who else is generating: visitor 0 alone and in the crowd
        figures["seeded_text_same_alone_and_in_crowd"] = all(r["text"] == many[0][0]["text"] for r in alone)

        message = clients[0].predict("cpu", 4, 4, 128, 64, 32, 3.5e-3, 100_000, 0.0, 500, 1337, "Tiny Shakespeare",
                                     None, "bench-crowd", api_name="/start_training")
        assert message.startswith("Started"), message
        deadline = time.perf_counter() + 600  # a loaded machine takes minutes over the first evaluation
        while not training_rate(clients[0], 1) and time.perf_counter() < deadline:
            pass  # until the run reports its first steps
        time.sleep(5)  # past the first evaluation and warm-up
        before = training_rate(clients[0], 10)
        during_rates, stop = [], threading.Event()

        def watch():  # the run's tokens/s while the crowd generates
            c = Client(app.url, analytics_enabled=False, verbose=False, ssl_verify=False)
            while not stop.is_set():
                rate = c.predict(api_name="/training_status").get("tokens_per_sec")
                if rate:
                    during_rates.append(rate)
                time.sleep(0.5)

        watcher = threading.Thread(target=watch)
        watcher.start()
        training_crowd = crowd(clients, args.chars, offset=args.clients)
        stop.set()
        watcher.join()
        after = training_rate(clients[0], 10)
        clients[0].predict(api_name="/stop_training")
        figures["crowd_while_training"] = summary(training_crowd)
        figures["training_tokens_per_s_alone"] = statistics.median(before + after) if before + after else None
        figures["training_tokens_per_s_with_crowd"] = statistics.median(during_rates) if during_rates else None
        figures["load_at_end"] = load()
    finally:
        app.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    a, c, t = figures["alone"], figures["crowd"], figures["crowd_while_training"]
    figures["ratio_chars_per_s_crowd_over_alone"] = c["chars_per_s_total"] / a["chars_per_s_total"]
    figures["ratio_p95_latency_crowd_over_alone"] = c["latency_s_p95"] / a["latency_s_p95"]
    if figures["training_tokens_per_s_with_crowd"] and figures["training_tokens_per_s_alone"]:
        figures["training_share_kept_with_crowd"] = (figures["training_tokens_per_s_with_crowd"]
                                                     / figures["training_tokens_per_s_alone"])
    print(f"load (1, 5, 15 min): {figures['load_at_start']} at start, {figures['load_at_end']} at the end")
    print(f"{'':26s} {'first char p50/max':>19s} {'latency p50/p95/max':>22s} {'chars/s, all':>13s}")
    for name, s in (("1 client alone", a), (f"{args.clients} clients at once", c),
                    (f"{args.clients} clients, training", t)):
        print(f"{name:26s} {s['first_char_s_median']:8.2f} / {s['first_char_s_max']:5.2f} s "
              f"{s['latency_s_p50']:6.2f} / {s['latency_s_p95']:5.2f} / {s['latency_s_max']:5.2f} s "
              f"{s['chars_per_s_total']:10,.0f}")
    print(f"crowd / alone: {figures['ratio_chars_per_s_crowd_over_alone']:.1f}x the characters/s (target >= 8x), "
          f"p95 latency {figures['ratio_p95_latency_crowd_over_alone']:.2f}x (target <= 3x)")
    print(f"training tokens/s: {figures['training_tokens_per_s_alone'] or 0:,.0f} without the crowd, "
          f"{figures['training_tokens_per_s_with_crowd'] or 0:,.0f} with it "
          f"({100 * figures.get('training_share_kept_with_crowd', 0):.0f}% kept)")
    print(f"seeded text the same alone and in the crowd: {figures['seeded_text_same_alone_and_in_crowd']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
