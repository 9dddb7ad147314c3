#!/usr/bin/env bash
# One command to check the GPU path on a machine with one CUDA GPU (under 8 minutes on an
# H100/H200 class GPU): the CUDA-only tests, the GPU lines of the training benchmark
# (PreAct ResNet-18 at 32 px and ResNet-50 at 224 px, fp32 and bf16), the loader line.
#
#   scripts/gpu_check.sh [OUT_DIR]      (default ./gpu-check); needs `make install-test` first
#
# Writes OUT_DIR/cuda-tests.txt, OUT_DIR/bench-gpu.jsonl, OUT_DIR/bench-loader.jsonl and
# prints them; exits non-zero if a test fails or no GPU is visible.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-gpu-check}
mkdir -p "$OUT"
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "error: no CUDA GPU is visible to torch; nothing to check" >&2
  exit 2
fi
"$PY" -c 'import torch; print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)' | tee "$OUT/device.txt"
status=0
timeout 240 "$PY" -m pytest -q -m cuda tests/sipat/test_cuda.py -p no:cacheprovider 2>&1 | tee "$OUT/cuda-tests.txt" || status=1
timeout 300 "$PY" -m worker.sipat.bench --gpu-only 2>&1 | tee "$OUT/bench-gpu.jsonl" || status=1
timeout 120 "$PY" -m worker.sipat.bench_loader 2>&1 | tee "$OUT/bench-loader.jsonl" || status=1
exit $status
