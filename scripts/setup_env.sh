#!/usr/bin/env bash
# Create or update the project's virtual environment in .venv with the pinned versions.
# Idempotent and quick when nothing changed: a stamp records the hash of what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY=$cand; break; fi
  done
fi
[ -n "$PY" ] || { echo "error: Python 3.10-3.12 is needed (python3 not found)." >&2; exit 1; }

extras=${STUDIO_EXTRAS:-test}
want=$( (cat constraints.txt pyproject.toml; echo "$extras"; "$PY" --version) | sha256sum | cut -d' ' -f1)
stamp=.venv/.installed
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "Setting up .venv (first run downloads PyTorch and friends; this takes a few minutes)..." >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade "pip>=24" "setuptools==80.10.2" wheel
# torch first, pinned: on CUDA machines the default wheel brings its CUDA runtime.
.venv/bin/python -m pip install -q -c constraints.txt torch torchvision
.venv/bin/python -m pip install -q -c constraints.txt --no-build-isolation -e ".[$extras]"
echo "$want" > "$stamp"
