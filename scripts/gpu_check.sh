#!/usr/bin/env bash
# The GPU check, one command, on a machine with one CUDA GPU, no network needed (under 8
# minutes on an H100): the CUDA-only tests, the GPU lines of the training benchmark (PreAct
# ResNet-18 at 32 px and ResNet-50 at 224 px, fp32 and bf16) and the loader line.
#
#   scripts/gpu_check.sh [--dry] [OUT_DIR]
#
# PY        the Python to use (default python3: a lent machine's own, with its torch)
# WHEELS    wheels to install first (default gpu-wheels/, from `make gpu-wheels`; empty: none):
#           pip --no-index --no-deps --target a folder of their own, put first on PYTHONPATH
#           with the repo root, so nothing is downloaded and nothing of PY's is changed
# OUT_DIR   where everything is written (default $OUT when set, else ./gpu-check):
#           check.log (all of it), selfcheck.txt, cuda-tests.txt, bench-gpu.jsonl,
#           bench-loader.jsonl, summary.txt; cpu-tests.txt with --dry
# --dry     without a GPU (`make gpu-check-dry`): everything up to the GPU steps, then the
#           CPU half of the CUDA tests (tests/sipat/test_precision.py) on this torch, and
#           exit 0 at "no CUDA GPU" when all of that passed
#
# First the versions and the self-check (scripts/gpu_selfcheck.py: every import, the torch
# API the library uses looked up in this torch, a tiny CPU smoke of the benchmark's paths);
# it stops there when an import or the smoke fails. Each step has a timeout (*_TIMEOUT, s):
# wheels 15, selfcheck 90, collect 15, cuda-tests 150, bench-gpu 150, bench-loader 60; 8
# minutes at most in all.
# Exit status: 0 all passed; 1 a step failed; 2 no CUDA GPU (without --dry).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

DRY=0
if [ "${1:-}" = "--dry" ]; then DRY=1; shift; fi
PY=${PY:-python3}
WHEELS=${WHEELS-gpu-wheels}
OUT_DIR=${1:-${OUT:-gpu-check}}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
rm -f "$OUT_DIR"/{check.log,summary.txt,selfcheck.txt,cuda-tests.txt,cpu-tests.txt}
rm -f "$OUT_DIR"/{bench-gpu.jsonl,bench-loader.jsonl}
if [ "$DRY" = 1 ]; then  # a CPU machine's slack (2 shared cores in CI)
  : "${WHEELS_TIMEOUT:=60}" "${SELFCHECK_TIMEOUT:=300}" "${COLLECT_TIMEOUT:=60}"
fi

status=0
T_START=$(date +%s)
# run NAME TIMEOUT OUTFILE CMD...: the command's output to the screen and OUTFILE, a line
# with its status and seconds to summary.txt
run() {
  local name=$1 limit=$2 file=$3 t0 rc
  shift 3
  echo "== $name (timeout ${limit} s)"
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$OUT_DIR/$file"
  rc=${PIPESTATUS[0]}
  local verdict=ok
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    verdict="TIMED OUT"
  elif [ "$rc" != 0 ]; then
    verdict="FAILED (exit $rc)"
  fi
  printf '%-14s %-18s %4d s\n' "$name" "$verdict" "$(($(date +%s) - t0))" \
    | tee -a "$OUT_DIR/summary.txt"
  return "$rc"
}
finish() {
  printf '%-14s %-18s %4d s\n' "total" "" "$(($(date +%s) - T_START))" >>"$OUT_DIR/summary.txt"
  echo "== summary ($OUT_DIR)"
  cat "$OUT_DIR/summary.txt"
  [ -n "${SITE:-}" ] && rm -rf "$SITE"
  exit "$1"
}

main() {
  export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
  # pytest loads only what is named: the machine's own plugins (any version) stay out
  export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
  "$PY" -c 'import torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA GPU"
print(f"torch {torch.__version__} | CUDA {torch.version.cuda} | GPU: {gpu}")' \
    | tee -a "$OUT_DIR/summary.txt" || finish 1
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 \
      | sed 's/^/nvidia-smi: /' | tee -a "$OUT_DIR/summary.txt"
  fi
  PYTHONPATH_EXTRA=$ROOT
  if [ -n "$WHEELS" ] && [ -d "$WHEELS" ]; then
    SITE=$(mktemp -d "${TMPDIR:-/tmp}/sipat-gpu-site.XXXXXX")
    # exactly the pinned list, from the folder alone: a missing wheel is an error here
    run wheels "${WHEELS_TIMEOUT:-15}" selfcheck.txt "$PY" -m pip install --isolated --quiet \
      --no-index --no-deps --no-compile --disable-pip-version-check --find-links "$WHEELS" \
      --target "$SITE" -r scripts/gpu-wheels.txt || finish 1
    PYTHONPATH_EXTRA=$SITE:$ROOT
  elif [ -n "$WHEELS" ]; then
    echo "note: no $WHEELS/ (make gpu-wheels): using $PY's own packages"
  fi
  export PYTHONPATH=$PYTHONPATH_EXTRA${PYTHONPATH:+:$PYTHONPATH}

  run selfcheck "${SELFCHECK_TIMEOUT:-90}" selfcheck.txt "$PY" scripts/gpu_selfcheck.py --smoke
  rc=$?
  if [ "$rc" = 3 ]; then
    echo "the library uses API the installed versions lack (DIFFERS above); going on"
    status=1
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "the self-check ran out of time (selfcheck.txt says how far it got); going on"
    status=1
  elif [ "$rc" != 0 ]; then
    echo "error: the self-check failed (selfcheck.txt): the GPU steps would fail the same way"
    finish 1
  fi
  PYTEST=("$PY" -m pytest -p pytest_timeout -p no:cacheprovider --confcutdir=tests/sipat)
  run collect "${COLLECT_TIMEOUT:-15}" cuda-tests.txt "${PYTEST[@]}" -q --collect-only \
    tests/sipat/test_cuda.py || status=1

  if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    if [ "$DRY" = 1 ]; then
      run cpu-tests "${CPU_TESTS_TIMEOUT:-600}" cpu-tests.txt "${PYTEST[@]}" -q -rfEs \
        tests/sipat/test_precision.py || status=1
      if [ "$status" = 0 ]; then
        echo "no CUDA GPU: every import and the CPU-runnable parts passed; the GPU steps need one"
      else
        echo "no CUDA GPU, and a step above failed"
      fi
      finish "$status"
    fi
    echo "error: no CUDA GPU is visible to torch; the GPU steps cannot run" >&2
    finish 2
  fi

  run cuda-tests "${CUDA_TESTS_TIMEOUT:-150}" cuda-tests.txt "${PYTEST[@]}" -q -rfEs -m cuda \
    tests/sipat/test_cuda.py || status=1
  run bench-gpu "${BENCH_TIMEOUT:-150}" bench-gpu.jsonl "$PY" -m worker.sipat.bench --gpu-only \
    || status=1
  run bench-loader "${LOADER_TIMEOUT:-60}" bench-loader.jsonl "$PY" -m worker.sipat.bench_loader \
    || status=1
  finish "$status"
}

main 2>&1 | tee "$OUT_DIR/check.log"
exit "${PIPESTATUS[0]}"
