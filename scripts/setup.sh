#!/usr/bin/env bash
# Create .venv beside the checkout and install diagnose into it (editable, with the test tools).
# Idempotent: a second run only re-checks. The install compiles the C accelerators of the log scanner
# and the capture readers (hatch_build.py); without a C compiler it goes on in pure Python.
# durable-rules has no wheels, so the first run compiles it (~1 min).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import diagnose, durable_rules_engine, pytest" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.installed ] \
   || [ diagnose/probes/logs/_fastscan.c -nt .venv/.installed ] \
   || [ diagnose/probes/capture/_fastcap.c -nt .venv/.installed ] \
   || [ diagnose/probes/proxylogs/_fastproxy.c -nt .venv/.installed ] \
   || [ hatch_build.py -nt .venv/.installed ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
    touch .venv/.installed
fi
