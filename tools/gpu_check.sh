#!/usr/bin/env bash
# The prepared GPU check of issue 11: one run of tools/bench_gpu.py on a lent GPU machine (Python 3.12,
# torch, transformers, OpenCV there; pydantic missing, so it travels as wheels).
#   here:  bash tools/gpu_check.sh fetch     # wheels into .whl/ (git-ignored via .git/info/exclude)
#   there: bash tools/gpu_check.sh run       # (device tool: carry [".whl"]) -> $OUT/gpu.json, $OUT/gpu.log
# `run` stays under 9 minutes: the full benchmark (sweep, split, live capacity by bisection, 60 s trials).
# `describe` (about 3 minutes): only describe all vs on_demand at 8 % and 25 % anomalous, batch 16
# (issue 21's goal there: >= 1.4x segments/s at 8 %), -> $OUT/describe.json. Not yet run on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  fetch)
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl pydantic pydantic-core annotated-types typing-inspection
    ls .whl ;;
  run)
    if [ -d .whl ]; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
      export PYTHONPATH=/tmp/site
    fi
    out="${OUT:-.}"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu-card.txt" || true
    PYTHONUNBUFFERED=1 timeout 540 python3 tools/bench_gpu.py --out "$out/gpu.json" 2>&1 | tee "$out/gpu.log" ;;
  describe)
    if [ -d .whl ]; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
      export PYTHONPATH=/tmp/site
    fi
    out="${OUT:-.}"
    PYTHONUNBUFFERED=1 timeout 300 python3 tools/bench_gpu.py --describe-only --describe-batches 16 \
      --describe-segments 64 --out "$out/describe.json" 2>&1 | tee "$out/describe.log" ;;
  *)
    echo "usage: bash tools/gpu_check.sh fetch|run|describe" >&2; exit 2 ;;
esac
