"""Wall time of probing 20 targets of which 10 never answer, with a 2 s timeout per operation.

Everything runs on loopback: 10 listeners that accept, 10 whose accept queue is full (SYNs dropped), and
for the TLS probe 10 that accept but never speak. The target is about one timeout (2 s), not ten (20 s).

    /work/venv/bin/python bench/probes.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from diagnose.probes import ProbeContext, run_probe  # noqa: E402
from tests.certs import CertFactory  # noqa: E402
from tests.servers import DnsServer, SilentPeer, TlsServer, UnansweredPort  # noqa: E402

TIMEOUT = 2.0


def timed(name: str, spec: dict[str, object]) -> None:
    started = time.monotonic()
    result, _ = run_probe(name, ProbeContext(), {**spec, "timeout": TIMEOUT})
    elapsed = time.monotonic() - started
    outcomes: dict[str, int] = {}
    for fact in result.facts:
        key = str(fact.attrs.get("outcome") or fact.attrs.get("handshake"))
        outcomes[key] = outcomes.get(key, 0) + 1
    shown = ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items()))
    print(f"{name:4} {len(result.facts):3} facts  {elapsed:6.2f} s  ({shown}; serial would be >= {10 * TIMEOUT:.0f} s)")


def main() -> None:
    print(f"20 targets, 10 of them silent, {TIMEOUT:.0f} s timeout per operation, all on loopback")
    unanswered = [UnansweredPort() for _ in range(10)]
    answering = [SilentPeer() for _ in range(10)]
    try:
        timed("tcp", {"targets": [s.address for s in unanswered + answering]})
    finally:
        for server in unanswered + answering:
            server.close()
    with tempfile.TemporaryDirectory() as tmp:
        issued = CertFactory(Path(tmp)).issue("cas01.contoso.local", san=["cas01.contoso.local"])
        tls_servers = [TlsServer(issued) for _ in range(10)]
        silent = [SilentPeer() for _ in range(10)]
        try:
            timed("tls", {"targets": [s.address for s in tls_servers + silent], "sni": "cas01.contoso.local"})
        finally:
            for server in tls_servers + silent:
                server.close()
    zone = {f"name{i}.contoso.com": {"A": [f"127.0.0.{i + 10}"]} for i in range(10)}
    with DnsServer(zone) as live, DnsServer({}, silent=["*"]) as dead:
        names = [f"name{i}.contoso.com" for i in range(10)]
        started = time.monotonic()
        result, _ = run_probe(
            "dns",
            ProbeContext(),
            {"names": names, "servers": [live.address, dead.address], "use_hosts": False, "timeout": TIMEOUT},
        )
        elapsed = time.monotonic() - started
        print(
            f"dns  {len(result.facts):3} facts  {elapsed:6.2f} s  (10 names x 2 servers x A/AAAA: 40 queries, "
            f"20 unanswered)"
        )


if __name__ == "__main__":
    main()
