"""How long reading a `netstat -anob` export takes, at the size of an exhausted Windows port range.

Writes a UTF-16 netstat export with N TIME_WAIT sockets (default 16,384: the whole default dynamic
range) plus established ones with `-b` owner lines, reads it with the host-export reader, builds the
host facts, and prints the time and peak memory of the read.

    .venv/bin/python bench/host_exports.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from diagnose.probes import ProbeContext
from diagnose.probes.host.exports import probe_exports, read_host_export


def netstat(time_wait: int, established: int = 2000) -> str:
    lines = ["", "Active Connections", "", "  Proto  Local Address          Foreign Address        State           PID"]
    port = 1025
    for _ in range(established):
        lines += [f"  TCP    10.0.0.1:{port:<5}         10.0.0.10:443          ESTABLISHED     1876", " [wspsrv.exe]"]
        port += 1
    for n in range(time_wait):
        server = f"10.0.0.{10 + n // 16384}:443"
        lines.append(f"  TCP    10.0.0.1:{49152 + n % 16384:<5}         {server:<22} TIME_WAIT       0")
    return "\r\n".join(lines) + "\r\n"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 16384
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "netstat.txt"
        path.write_bytes(b"\xff\xfe" + netstat(n).encode("utf-16-le"))
        size = path.stat().st_size
        tracemalloc.start()
        started = time.perf_counter()
        export = read_host_export(path)
        read = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        started = time.perf_counter()
        result = probe_exports(ProbeContext(), {"exports": [str(path)], "server_addresses": ["10.0.0.10"]})
        whole = time.perf_counter() - started
    print(f"netstat export: {size / 1e6:.1f} MB UTF-16, {len(export.sockets)} TCP sockets")
    print(f"read: {read:.3f} s ({len(export.sockets) / read:,.0f} sockets/s), peak memory {peak / 1e6:.1f} MB")
    print(f"read + facts: {whole:.3f} s, {len(result.facts)} facts")


if __name__ == "__main__":
    main()
