#!/usr/bin/env bash
# Create a venv beside the checkout (.venv, or $VENV) with $PYTHON (python3) and install diagnose into
# it (editable, with the test tools). Idempotent: a second run only re-checks.
# The install compiles the C accelerators of the log scanner and the capture readers (hatch_build.py);
# without a C compiler it goes on in pure Python. durable-rules has no wheels: it is compiled here
# (~1 min); on Python 3.13+ from the patched sdist (scripts/build_durable.py). Where it cannot be
# built, diagnose is installed without it and runs on the reference engine (same answers).
# DURABLE=0 installs without durable_rules on purpose (as on the TMG host).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PY" -m venv "$VENV" 2>/dev/null; then
        # an interpreter whose ensurepip has no wheels (scripts/debian_python.sh): pip from PyPI
        rm -rf "$VENV"
        "$PY" -m venv --without-pip "$VENV"
        wheels=$(mktemp -d)
        python3 -m pip download -q --no-deps -d "$wheels" pip
        "$VENV/bin/python" "$(ls "$wheels"/pip-*.whl | head -1)/pip" install -q pip
        rm -rf "$wheels"
    fi
fi
if ! "$VENV/bin/python" -c "import diagnose, pytest" >/dev/null 2>&1 \
   || [ ! -e "$VENV/.installed" ] \
   || [ pyproject.toml -nt "$VENV/.installed" ] \
   || [ diagnose/probes/logs/_fastscan.c -nt "$VENV/.installed" ] \
   || [ diagnose/probes/capture/_fastcap.c -nt "$VENV/.installed" ] \
   || [ diagnose/probes/proxylogs/_fastproxy.c -nt "$VENV/.installed" ] \
   || [ hatch_build.py -nt "$VENV/.installed" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    links=()
    durable=${DURABLE:-1}
    if [ "$durable" = 1 ] && "$VENV/bin/python" -c "import sys; sys.exit(sys.version_info < (3, 13))"; then
        # 3.13 removed PyEval_CallObject: only the patched build imports there
        if "$VENV/bin/python" scripts/build_durable.py --dest "$VENV/wheelhouse" >/dev/null; then
            links=(--find-links "$VENV/wheelhouse")
        else
            durable=0
        fi
    fi
    if [ "$durable" = 1 ] && "$VENV/bin/python" -m pip install -q "${links[@]}" -e '.[durable,test]'; then
        :
    elif [ "$durable" = 0 ] && [ "${DURABLE:-1}" = 0 ]; then
        "$VENV/bin/python" -m pip uninstall -q -y durable-rules >/dev/null 2>&1 || true
        "$VENV/bin/python" -m pip install -q -e '.[test]'
    else
        echo "note: durable_rules could not be built here (no working C compiler?); installing without it:" \
             "diagnose runs on the reference engine" >&2
        "$VENV/bin/python" -m pip install -q -e '.[test]'
    fi
    touch "$VENV/.installed"
fi
