#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: system tools the tests use, the venv, lint, tests.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k engine -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
# dig comes from the package bind9-dnsutils; tc and ip (iproute2) make the packet-loss captures;
# chromium renders the HTML reports (tests/test_report_pictures.py); haproxy and nginx write the
# proxy logs the proxylogs reader tests read
for tool in tshark tcpdump dig tc ip chromium haproxy nginx; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends tshark tcpdump bind9-dnsutils iproute2 chromium haproxy nginx >/dev/null
    else
        echo "note: ${need[*]} missing and cannot be installed here; tests that need them will skip" >&2
    fi
fi
bash scripts/setup.sh
.venv/bin/ruff check diagnose tests bench hatch_build.py
.venv/bin/python -m pytest -q "$@"
