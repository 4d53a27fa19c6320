"""Generate text from the command line, streamed as it is produced:

    python -m gpt.generate --weights weights/my-run --prompt "ROMEO:" --max-new-tokens 500 --temperature 0.8 --top-k 40 --seed 1
    echo "ROMEO:" | python -m gpt.generate --prompt -     # the prompt from standard input

Exit status: 0 done, 2 a usage error (bad flag or setting), 1 a failure (missing weights, no network, ...).
"""

from __future__ import annotations

import argparse
import sys

import torch

from gpt.device import pick_device
from gpt.errors import command
from gpt.sharing.pretrained import GPT
from gpt.generation.decode import generate_text, stream_text
from gpt.generation.precision import DTYPES, inference_model
from gpt.sharing.weights import default_weights


@command
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="weights folder or Hub repo id (default: the shipped weights/default)")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit) when --weights is a repo id")
    parser.add_argument("--prompt", default="", help="text to continue; - reads it from standard input (default: start from a newline)")
    parser.add_argument("--max-new-tokens", type=int, default=500, help="characters to generate (default: 500)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; higher = wilder (default: 0.8)")
    parser.add_argument("--top-k", type=int, default=None, help="sample only from the k likeliest characters")
    parser.add_argument("--top-p", type=float, default=None, help="sample only from the smallest set with this much probability")
    parser.add_argument("--seed", type=int, default=None, help="same seed, same text")
    parser.add_argument("--num-samples", type=int, default=1, help="independent samples, generated as one batch")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--dtype", default="auto", choices=DTYPES,
                        help="weights to generate with. auto: int8 on CPUs with native bf16 (about 3x float32's "
                             "tokens/s at the lecture's size), bfloat16 on CUDA, else float32")
    args = parser.parse_args(argv)
    if args.prompt == "-":
        args.prompt = sys.stdin.read()  # as typed or piped: a trailing newline is part of the prompt
    sampling = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                    top_p=args.top_p, seed=args.seed)
    model = GPT.from_pretrained(args.weights or default_weights(), revision=args.revision, map_location=str(pick_device(args.device)))
    model = inference_model(model, args.dtype)
    if args.num_samples == 1:
        stream = stream_text(model, args.prompt, **sampling)  # checks prompt and settings first
        sys.stdout.write(args.prompt)
        for ch in stream:
            sys.stdout.write(ch)
            sys.stdout.flush()
        sys.stdout.write("\n")
    else:
        for i, text in enumerate(generate_text(model, args.prompt, num_samples=args.num_samples, **sampling)):
            print(f"--- sample {i + 1} ---\n{args.prompt}{text}")
    return 0


if __name__ == "__main__":
    with torch.inference_mode():
        sys.exit(main())
