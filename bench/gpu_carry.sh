#!/usr/bin/env bash
# Run here, before the GPU proof: fill .gpu/ with what the bare GPU machine lacks (the wheels bench/gpu_wheels.txt
# names, at the app lock's versions, built for its Python 3.12 on x86-64) and Tiny Shakespeare (it reaches no network), then
# check that everything that travels (the tracked files, untracked ones git does not ignore, .gpu/) stays under
# the 64 MiB the device machine takes. On the GPU machine: bash bench/gpu.sh OUT (docs/gpu.md).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu/wheels
mkdir -p .gpu/wheels
# each name of bench/gpu_wheels.txt pinned as requirements.txt (the lock) pins it
python3 - >.gpu/wheels.txt <<'PY'
import re
from pathlib import Path
lock = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", Path("requirements.txt").read_text(), re.M))
for name in re.findall(r"^([A-Za-z0-9_.-]+)\s*$", Path("bench/gpu_wheels.txt").read_text(), re.M):
    print(f"{name}=={lock[name]}")
PY
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .gpu/wheels -r .gpu/wheels.txt
cp "${TINYSHAKESPEARE_PATH:-../shared/data/tinyshakespeare/input.txt}" .gpu/input.txt
python3 - <<'PY'
import os, subprocess
files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], capture_output=True,
                       check=True).stdout.decode().split("\0")
tree = sum(os.path.getsize(f) for f in files if f and os.path.isfile(f))
carried = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(".gpu") for f in fs)
limit = 64 * 2**20
print(f"travels: {tree / 2**20:.1f} MiB of files + {carried / 2**20:.1f} MiB in .gpu/ = "
      f"{(tree + carried) / 2**20:.1f} MiB of {limit / 2**20:.0f}")
if tree + carried > limit:
    raise SystemExit("too much to travel: leave something out of .gpu/ or untracked files")
PY
echo "ready: run 'bash bench/gpu.sh \$OUT' on the GPU machine with .gpu carried"
