#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: system tools the tests use, the venv, lint, tests.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k engine -x`; then only the primary run.
# Without arguments, the subset that runs every command and every reader then runs on Python 3.8
# (the TMG host's, Windows Server 2008 R2's last: reference engine), 3.13 and 3.14 (durable_rules from the
# patched build), each in its own venv (.venv3.8, .venv3.13, .venv3.14); pyenv installs a missing Python,
# else scripts/debian_python.sh unpacks Debian unstable's (3.14 on Debian 12).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
# dig comes from the package bind9-dnsutils; tc and ip (iproute2) make the packet-loss captures;
# chromium renders the HTML reports (tests/test_report_pictures.py); haproxy and nginx write the
# proxy logs the proxylogs reader tests read
for tool in tshark tcpdump dig tc ip chromium haproxy nginx patchelf; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends tshark tcpdump bind9-dnsutils iproute2 chromium haproxy nginx patchelf >/dev/null
    else
        echo "note: ${need[*]} missing and cannot be installed here; tests that need them will skip" >&2
    fi
fi
bash scripts/setup.sh
PY_SOURCES=(diagnose tests bench hatch_build.py scripts/build_durable.py scripts/bundle_tmg_host.py scripts/golden.py)
.venv/bin/ruff check "${PY_SOURCES[@]}"
# the formatter: a file `ruff format` would change stops here (run `.venv/bin/ruff format` to fix it)
.venv/bin/ruff format --check "${PY_SOURCES[@]}"
# type checking: [tool.mypy] in pyproject.toml (diagnose/, checked as Python 3.8); an error stops here
.venv/bin/mypy
# with a C compiler durable_rules must be there (tests/test_platforms.py checks it)
compiler=0
if command -v cc >/dev/null 2>&1 && [ "$(command -v cc)" != /bin/false ]; then compiler=1; fi
DIAGNOSE_EXPECT_DURABLE=$compiler .venv/bin/python -m pytest -q "$@"
[ $# -eq 0 ] || exit 0

# every command (cli, console, guided, run_*, rulebook: run, collect, analyze, examples, rules, causes,
# probe) and every reader (tests/probes), as files and folders so that new tests join it
SUBSET=(tests/test_cli.py tests/test_console.py tests/test_explain.py tests/test_guided.py tests/test_run_*.py tests/test_session.py tests/test_probe_generic.py
        tests/test_wheel.py tests/rulebook tests/probes)
# what the primary run covers and another Python adds nothing to (the same Python code compared with tshark,
# loss in a network namespace, a 100-run stress, whole proxy set-ups): keeps CI within its 30 minutes
NOT_AGAIN=(--ignore=tests/probes/capture/test_tshark.py --ignore=tests/probes/capture/test_loss.py
           --ignore=tests/probes/proxylogs/test_end_to_end.py
           --deselect=tests/probes/capture/test_workers.py::test_a_hundred_mixed_runs_end)
python_for() {  # the newest installed CPython X.Y (pyenv's, else on PATH); pyenv installs it if missing
    local version=$1 root found
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    found=$(ls -d "$root"/versions/"$version".*/bin/python"$version" 2>/dev/null | sort -V | tail -1 || true)
    if [ -z "$found" ] && command -v "python$version" >/dev/null 2>&1; then
        found=$(command -v "python$version")
    fi
    if [ -z "$found" ] && command -v pyenv >/dev/null 2>&1; then
        pyenv install -s "$version" >&2
        found=$(ls -d "$root"/versions/"$version".*/bin/python"$version" 2>/dev/null | sort -V | tail -1 || true)
    fi
    if [ -z "$found" ]; then  # 3.14 on Debian 12: pyenv's sources are not reachable, Debian unstable's packages are
        found=$(bash scripts/debian_python.sh "$version" 2>/dev/null || true)
    fi
    [ -n "$found" ] && echo "$found"
}
for version in 3.8 3.13 3.14; do
    if ! py=$(python_for "$version"); then
        echo "note: no Python $version here and pyenv could not install it; its subset is not run" >&2
        continue
    fi
    echo "== Python $version ($py): the commands and readers"
    # 3.8 as on the TMG host: the reference engine; 3.13 and 3.14: durable_rules from the patched build
    durable=$([ "$version" = 3.8 ] && echo 0 || echo "$compiler")
    VENV=".venv$version" PYTHON="$py" DURABLE=$durable bash scripts/setup.sh
    DIAGNOSE_EXPECT_DURABLE=$durable ".venv$version/bin/python" -m pytest -q -p no:cacheprovider \
        "${SUBSET[@]}" tests/test_platforms.py "${NOT_AGAIN[@]}"
done
