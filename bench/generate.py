"""Generation speed, batch 1: ours (KV cache; float32, and the faster inference copy) against the lecture's generate.

    python bench/generate.py [--tokens 500 2000] [--reps 3] [--json bench/results/generate.json]

Two models: the shipped default weights, and one of the lecture's size (6 layers, 6 heads, 384 wide, block 256,
vocab 65) with random weights (speed depends on the shapes, not on the values). The lecture's side is its
generate from bench/lecture_gpt.py (the whole cropped context recomputed for every new token) on a model of the
same shape, also random, run under torch.no_grad (the lecture's script does not even do that). All sides sample
plainly (temperature 1, no top-k) after the same 100-character prompt. Time to first token is the prefill plus
the first sample. Also measured: what the bf16 and int8 copies cost in quality, on the default weights.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from lecture_gpt import GPTLanguageModel  # noqa: E402

from gpt import GPT, CharTokenizer, GPTConfig  # noqa: E402
from gpt.data import TextData, load_text  # noqa: E402
from gpt.device import describe_device, fast_bf16  # noqa: E402
from gpt.generation.decode import generate_text, generate_tokens  # noqa: E402
from gpt.generation.precision import inference_model, precision  # noqa: E402

PROMPT_CHARS = 100


def ours(model, idx, n: int) -> tuple[float, float]:
    """(seconds to the first token, tokens/s over all n) for gpt.generation.decode.generate_tokens."""
    started = time.perf_counter()
    tokens = generate_tokens(model, idx, n, seed=0)
    next(tokens)
    first = time.perf_counter() - started
    for _ in tokens:
        pass
    return first, n / (time.perf_counter() - started)


@torch.no_grad()
def lecture(model: GPTLanguageModel, idx, n: int) -> tuple[float, float]:
    """The same two figures for the lecture's generate (a 1-token call gives the time to the first token)."""
    started = time.perf_counter()
    model.generate(idx, 1)
    first = time.perf_counter() - started
    started = time.perf_counter()
    model.generate(idx, n)
    return first, n / (time.perf_counter() - started)


def lecture_twin(config: GPTConfig) -> GPTLanguageModel:
    torch.manual_seed(0)
    return GPTLanguageModel(config.vocab_size, config.n_embd, config.n_head, config.n_layer, config.block_size,
                            dropout=0.0).eval()


@torch.no_grad()
def val_loss(model, data: TextData) -> float:
    """Mean loss over every consecutive block_size window of the val split, from logits upcast to float32
    (as sampling reads them), so the bf16 copy is judged on its predictions, not on bf16 rounding of the loss."""
    T = model.config.block_size
    tokens = data.splits["val"]
    n = (len(tokens) - 1) // T
    x, y = tokens[: n * T].view(n, T), tokens[1: n * T + 1].view(n, T)
    total = 0.0
    for i in range(0, n, 64):
        logits, _ = model(x[i:i + 64])
        total += F.cross_entropy(logits.float().flatten(0, 1), y[i:i + 64].flatten(), reduction="sum").item()
    return total / (n * T)


def quality(model: GPT) -> dict:
    """What the faster copies cost: val loss over the whole split, and where a seeded sample parts ways."""
    data = TextData(load_text(), CharTokenizer(model.vocab), model.config.block_size)
    sampling = dict(max_new_tokens=300, temperature=0.8, top_k=40, seed=1)
    result = {"sample_settings": sampling}
    reference = generate_text(model, "ROMEO:", **sampling)[0]
    for dtype in ("float32", "bfloat16", "int8"):
        fast = inference_model(model, dtype)
        text = generate_text(fast, "ROMEO:", **sampling)[0]
        result[f"val_loss_{dtype}"] = val_loss(fast, data)
        result[f"sample_{dtype}"] = text
        result[f"same_first_chars_{dtype}"] = next((i for i, (p, q) in enumerate(zip(reference, text)) if p != q),
                                                   len(text))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--reps", type=int, default=3, help="runs of ours per figure (median); the lecture's: 1")
    parser.add_argument("--skip-lecture", action="store_true", help="only ours (the lecture's takes minutes)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "generate.json")
    args = parser.parse_args()
    default = GPT.from_pretrained(ROOT / "weights" / "default")
    torch.manual_seed(0)
    lecture_size = GPT(GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.0)).eval()
    prompt = load_text()[:PROMPT_CHARS]  # "First Citizen: Before we proceed any further, ..."
    idx = torch.tensor([CharTokenizer(default.vocab).encode(prompt)])  # (1, 100); the same vocab for both

    rows = []
    for name, model in (("default weights (6x192, block 128)", default), ("lecture size (6x384, block 256), random", lecture_size)):
        started = time.perf_counter()
        fast = inference_model(model)  # what the app and the CLI do: the precision measured fastest here
        copy_ms = (time.perf_counter() - started) * 1000
        twin = None if args.skip_lecture else lecture_twin(model.config)
        copies = {dtype: inference_model(model, dtype) for dtype in ("bfloat16", "int8")}
        for n in args.tokens:
            fp32 = [ours(model, idx, n) for _ in range(args.reps)]
            auto = [ours(fast, idx, n) for _ in range(args.reps)]
            each = {dtype: statistics.median(ours(m, idx, n)[1] for _ in range(args.reps)) for dtype, m in copies.items()}
            row = {"model": name, "new_tokens": n, "params": model.num_params(),
                   "ours_fp32_tokens_per_s": statistics.median(r[1] for r in fp32),
                   "ours_fp32_first_token_ms": statistics.median(r[0] for r in fp32) * 1000,
                   "ours_auto_dtype": precision(fast),
                   "ours_auto_tokens_per_s": statistics.median(r[1] for r in auto),
                   "ours_auto_first_token_ms": statistics.median(r[0] for r in auto) * 1000,
                   "ours_auto_copy_ms": copy_ms,  # includes measuring the precisions, once per model shape
                   **{f"ours_{dtype}_tokens_per_s": rate for dtype, rate in each.items()}}
            if twin is not None:
                first, rate = lecture(twin, idx, n)
                row.update(lecture_tokens_per_s=rate, lecture_first_token_ms=first * 1000)
            rows.append(row)
            print(json.dumps(row), flush=True)

    q = quality(default)
    print(f"\n{describe_device(torch.device('cpu'))}, torch {torch.__version__}, fast_bf16: {fast_bf16('cpu')}; batch 1, "
          f"{PROMPT_CHARS}-character prompt; tokens/s over all new tokens (median of {args.reps} for ours, 1 run for the lecture's)")
    print(f"{'model':<40} {'new':>5} {'lecture tok/s':>13} {'ours fp32':>10} {'bf16':>7} {'int8':>7} "
          f"{'auto (its choice)':>18} {'1st token ms: lecture':>22} {'fp32':>6} {'auto':>6}")
    for r in rows:
        lec = f"{r['lecture_tokens_per_s']:>13,.0f}" if "lecture_tokens_per_s" in r else f"{'-':>13}"
        lec_first = f"{r['lecture_first_token_ms']:>22.1f}" if "lecture_first_token_ms" in r else f"{'-':>22}"
        print(f"{r['model']:<40} {r['new_tokens']:>5} {lec} {r['ours_fp32_tokens_per_s']:>10,.0f} "
              f"{r['ours_bfloat16_tokens_per_s']:>7,.0f} {r['ours_int8_tokens_per_s']:>7,.0f} "
              f"{r['ours_auto_tokens_per_s']:>9,.0f} ({r['ours_auto_dtype']:>7}) {lec_first} {r['ours_fp32_first_token_ms']:>6.1f} "
              f"{r['ours_auto_first_token_ms']:>6.1f}")
    print(f"('auto' = inference_model(model), the precision it measured fastest for each model; choosing and copying took "
          f"{rows[0]['ours_auto_copy_ms']:.0f} ms for the default weights, {rows[-1]['ours_auto_copy_ms']:.0f} ms for the lecture size)")
    print(f"\ndefault weights, whole val split: loss {q['val_loss_float32']:.4f} in float32, "
          f"{q['val_loss_bfloat16']:.4f} as the bf16 copy, {q['val_loss_int8']:.4f} with int8 weights")
    print(f"same seed (ROMEO:, 300 characters, temperature 0.8, top-k 40): bf16 and int8 match float32 for the first "
          f"{q['same_first_chars_bfloat16']} and {q['same_first_chars_int8']} characters, then part ways")
    for dtype in ("float32", "bfloat16", "int8"):
        print(f"  {dtype + ':':<9} {q['sample_' + dtype][:150]!r}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": describe_device(torch.device("cpu")), "torch": torch.__version__,
                                     "fast_bf16": fast_bf16("cpu"), "prompt_chars": PROMPT_CHARS, "reps": args.reps,
                                     "rows": rows, "quality": q}, indent=2) + "\n")


if __name__ == "__main__":
    main()
