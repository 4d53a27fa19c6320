"""The generation engine alone (no web server, no clients): one stream against twenty, in each precision.

    python bench/engine.py [--streams 20] [--chars 200] [--rounds 3] [--json bench/results/engine.json]

What batching gives before the app takes its share of the cores, and what sets its limit. For each precision the
server could serve in here (int8 is the one it serves on a CPU with native bf16: gpt.generation.precision.serving_dtype):
  - a decoding step's time with 1 row and with 20 rows (gpt.generation.decode.Batch, the engine's step, over 150 steps
    that include each stream's cache rebuild past block_size), and how many rows the model's matmuls need before
    every row gets the same bits whatever the batch holds (gpt.generation.decode.min_shared_rows: fewer are padded);
  - characters/s of one stream alone and of twenty at once through gpt.generation.engine.Engine, each read by its own
    thread, and whether stream 0's seeded text was the same alone and in the crowd.
One stream and twenty, and the precisions, alternate round by round, so all see the same moods of the machine;
medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from crowd import PROMPTS  # noqa: E402  the app bench's visitors' prompts

from gpt.device import cpu_name, fast_bf16  # noqa: E402
from gpt.generation.engine import THREADS, Engine, with_threads  # noqa: E402
from gpt.sharing.pretrained import load_cached  # noqa: E402
from gpt.generation.decode import Batch, Stream, min_shared_rows  # noqa: E402
from gpt.generation.precision import inference_model, serving_dtype  # noqa: E402


def step_ms(model, rows: int, steps: int = 150) -> float:
    """Milliseconds per Batch.step with `rows` streams, after 10 uncounted steps (run in the engine's thread count)."""
    def run():
        batch = Batch(model, rows)
        for i in range(rows):
            batch.add(Stream([1 + i % 20], 10**6, temperature=0.8, seed=i))
        for _ in range(10):
            batch.step()
        started = time.perf_counter()
        for _ in range(steps):
            batch.step()
        return (time.perf_counter() - started) / steps * 1e3
    return with_threads(THREADS, run)


def chars_per_s(engine: Engine, streams: int, chars: int) -> tuple[float, str]:
    """(characters/s of `streams` streams started together, each read by its own thread; stream 0's text)."""
    texts = [""] * streams
    readers = [engine.stream_text(PROMPTS[i % len(PROMPTS)], max_new_tokens=chars, temperature=0.8, top_k=40,
                                  seed=i) for i in range(streams)]
    started = time.perf_counter()
    threads = [threading.Thread(target=lambda i=i: texts.__setitem__(i, "".join(readers[i])))
               for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return streams * chars / (time.perf_counter() - started), texts[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=20, help="streams at once (default: 20)")
    parser.add_argument("--chars", type=int, default=200, help="characters each stream makes (default: 200)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds of alone / crowd (default: 3)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "engine.json")
    args = parser.parse_args()
    base = load_cached(ROOT / "weights" / "default")
    cpu = cpu_name()
    figures = {"cpu": cpu, "torch": torch.__version__, "streams": args.streams, "chars": args.chars,
               "served": serving_dtype(base), "precisions": {}}
    names = ["int8", "bfloat16", "float32"] if fast_bf16(torch.device("cpu")) else ["float32"]
    print(f"{cpu}, torch {torch.__version__}, {THREADS} torch thread; the app serves {figures['served']}")
    print(f"{'':9s} {'padded to':>9s} {'step, 1 row':>12s} {f'{args.streams} rows':>9s} {'1 stream':>10s} "
          f"{f'{args.streams} streams':>11s} {'ratio':>6s}  same text")
    models = {name: inference_model(base, name) for name in names}
    engines = {name: Engine(model) for name, model in models.items()}  # one each, long-lived, as in the app
    runs = {name: {"steps_1": [], "steps_n": [], "alone": [], "crowd": [], "same": True} for name in names}
    for engine in engines.values():
        chars_per_s(engine, args.streams, args.chars)  # warm up
    for _ in range(args.rounds):  # precisions alternate too: they are compared with each other
        for name, model in models.items():
            r = runs[name]
            r["steps_1"].append(step_ms(model, 1))
            r["steps_n"].append(step_ms(model, args.streams))
            a, text_alone = chars_per_s(engines[name], 1, args.chars)
            c, text_crowd = chars_per_s(engines[name], args.streams, args.chars)
            r["alone"].append(a)
            r["crowd"].append(c)
            r["same"] = r["same"] and text_alone == text_crowd
    for name, model in models.items():
        r = runs[name]
        pad = with_threads(THREADS, lambda: min_shared_rows(model))
        f = {"padded_to_rows": pad, "step_ms_1_row": statistics.median(r["steps_1"]),
             "step_ms_many_rows": statistics.median(r["steps_n"]),
             "chars_per_s_alone": statistics.median(r["alone"]), "chars_per_s_crowd": statistics.median(r["crowd"]),
             "seeded_text_same_alone_and_in_crowd": r["same"]}
        f["ratio_crowd_over_alone"] = f["chars_per_s_crowd"] / f["chars_per_s_alone"]
        figures["precisions"][name] = f
        print(f"{name:9s} {pad or '-':>9} {f['step_ms_1_row']:9.2f} ms {f['step_ms_many_rows']:6.2f} ms "
              f"{f['chars_per_s_alone']:10,.0f} {f['chars_per_s_crowd']:11,.0f} {f['ratio_crowd_over_alone']:5.1f}x  "
              f"{r['same']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
