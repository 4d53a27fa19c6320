#!/usr/bin/env bash
# The GPU proof on a bare CUDA machine, from a copy of the repository: bash bench/gpu.sh OUT
# .gpu/ (filled by bench/gpu_carry.sh) brings the wheels the machine lacks and Tiny Shakespeare; without it, the
# machine's own Python must already have gradio. OUT gets gpu.json, gpu.log, junit.xml and nvidia-smi.txt.
set -uo pipefail
out="${1:?usage: bash bench/gpu.sh OUT}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
if compgen -G ".gpu/wheels/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu-site \
    .gpu/wheels/*.whl || exit 1
  export PYTHONPATH="/tmp/gpu-site${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -f .gpu/input.txt ]; then export TINYSHAKESPEARE_PATH="$PWD/.gpu/input.txt"; fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False
nvidia-smi >"$out/nvidia-smi.txt" 2>&1
python3 bench/gpu.py --out "$out"
