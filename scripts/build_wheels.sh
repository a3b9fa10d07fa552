#!/usr/bin/env bash
# Build the two wheels of diagnose into dist/ (or $1): the platform wheel with the compiled C
# accelerators of this machine's Python (cpXY-cpXY-PLATFORM), and the pure-Python wheel
# (py3-none-any) that installs on any Python 3.8+ and platform, the TMG host's Windows Server
# 2008 R2 with Python 3.8 included. Uses the venv of scripts/setup.sh (hatchling, setuptools).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
PY=${VENV:-.venv}/bin/python
mkdir -p "$out"
"$PY" -m pip wheel --no-deps --no-build-isolation -q -w "$out" .
DIAGNOSE_PURE_PYTHON=1 "$PY" -m pip wheel --no-deps --no-build-isolation -q -w "$out" .
ls -1 "$out"/tmg_diagnose-*.whl
