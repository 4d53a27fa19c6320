"""Export a weights folder for transformers, transformers.js and onnxruntime (gpt.sharing.export_folder makes it):

    python -m gpt.export weights/NAME OUT [--overwrite]

OUT then loads with AutoModelForCausalLM.from_pretrained(OUT) and AutoTokenizer.from_pretrained(OUT), and its
onnx/ folder with transformers.js or onnxruntime; GPT.from_pretrained(OUT) reads it too. Weights GPT-2 cannot
express exactly are refused in one line with exit status 2, and nothing is written. Needs the export extra:
pip install ".[export]".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gpt.errors import command
from gpt.sharing.export_folder import ONNX_DIR, ONNX_FILE, export, require_libraries
from gpt.sharing.pretrained import GPT


@command
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="a weights folder (weights/NAME) or a Hub repo id")
    parser.add_argument("out", help="the folder to write (it must not exist or be empty, unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace what OUT holds")
    args = parser.parse_args(argv)
    require_libraries()
    model = GPT.from_pretrained(args.weights)
    graph = Path(args.weights) / ONNX_DIR / ONNX_FILE  # a folder's earlier export (the shipped one has it): reused
    report = export(model, args.out, overwrite=args.overwrite, graph=graph)
    total = sum(report["bytes"].values())
    errors = ", ".join(f"{k} {v:.1e}" for k, v in report["max_logit_error"].items())
    print(f"wrote {args.out}: {len(report['bytes'])} files, {total / 2**20:.1f} MiB; largest logit difference from "
          f"ours: {errors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
