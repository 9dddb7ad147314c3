#!/usr/bin/env bash
# The dry run's venv (`make gpu-check-dry`): CPython 3.12, as on the lent GPU machine, with
# only that machine's torch and torchvision versions (scripts/gpu-dry-torch.txt says why
# those packages). Built once into an ignored folder, rebuilt when the list changes.
#
#   scripts/gpu_dry_venv.sh [VENV]      (default .gpu-dry/venv; PYTHON312 names the Python)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.gpu-dry/venv}
REQS=scripts/gpu-dry-torch.txt
STAMP="$VENV/.installed-$(sha256sum "$REQS" | cut -c1-16)"
if [ -f "$STAMP" ]; then
  echo "dry-run venv $VENV: up to date"
  exit 0
fi

is312() {
  [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null
}
PY312=
PYENV_312=("${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12)
for candidate in "${PYTHON312:-}" python3.12 "${PYENV_312[@]}"; do
  if is312 "$candidate"; then PY312=$candidate; break; fi
done
if [ -z "$PY312" ] && command -v uv >/dev/null; then
  candidate=$(uv python find 3.12 2>/dev/null || true)
  if is312 "$candidate"; then PY312=$candidate; fi
fi
if [ -z "$PY312" ]; then
  echo "error: no CPython 3.12 here (the lent machine's); give one with PYTHON312=..." >&2
  echo "       (pyenv install 3.12, or: pip install uv && uv python install 3.12)" >&2
  exit 1
fi

echo "dry-run venv $VENV: $("$PY312" --version), $(grep -E '^torch(vision)?==' "$REQS" | xargs)"
rm -rf "$VENV"
"$PY312" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$REQS"
"$VENV/bin/python" -c 'import torch, torchvision
print("torch", torch.__version__, "| torchvision", torchvision.__version__)'
touch "$STAMP"
