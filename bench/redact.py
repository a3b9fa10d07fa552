"""Redaction benchmark: a big bundle pseudonymised end to end.

    python bench/redact.py [--facts 10000] [--excerpts 5000] [--hosts 500] [--repeat 3]

The bundle holds capture connections between many addresses, per-server log summaries, DNS answers,
service states on many hosts, and raw W3C log lines as excerpts (addresses, FQDNs, DOMAIN\\user,
URLs). Figures printed: facts and excerpt lines per second through `Redactor.bundle` (two passes:
learn, then rewrite). Target (2-core machine): 10,000 facts and 5,000 excerpt lines in under 2 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from diagnose.facts import EvidenceBundle, Fact, make_fact  # noqa: E402
from diagnose.redact import Redactor  # noqa: E402


def build(facts: int, excerpts: int, hosts: int, rng: random.Random) -> EvidenceBundle:
    def internal() -> str:
        return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"

    def external() -> str:
        return f"{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"

    names = [f"srv{n:03d}.site{n % 17}.contoso.local" for n in range(hosts)]
    out: list[Fact] = []
    for n in range(facts):
        pick = n % 4
        if pick == 0:
            a, b = internal(), internal()
            out.append(
                make_fact(
                    "capture.connection",
                    f"{a}:{40000 + n % 20000}>{b}:443",
                    "capture",
                    source="trace.pcapng",
                    location=f"frames {n}, {n + 3}",
                    originator=f"{a}:{40000 + n % 20000}",
                    responder=f"{b}:443",
                    teardown="dirty-close",
                    leg="server",
                    conn_state="RSTO",
                    history="fAR",
                )
            )
        elif pick == 1:
            server = internal()
            out.append(
                make_fact(
                    "log.status_summary",
                    f"server:{server}",
                    "logs",
                    source="ISALOG_20261127_WEB_000.w3c",
                    scope="server",
                    server=server,
                    status64_count=n % 50,
                    samples=[f"ISALOG_20261127_WEB_000.w3c:{n}"],
                )
            )
        elif pick == 2:
            name = rng.choice(names)
            out.append(
                make_fact(
                    "dns.resolution",
                    name,
                    "dns",
                    source="dns",
                    location="10.1.4.1",
                    name=name,
                    role="published",
                    outcome="ok",
                    addresses=[external()],
                    matches_internal=False,
                    attrs={"source": "dns", "server": "10.1.4.1:53"},
                )
            )
        else:
            host = rng.choice(names).split(".")[0].upper()
            out.append(
                make_fact(
                    "service.state",
                    f"{host}/MSExchangeFBA",
                    "services",
                    source=f"{host}-services.csv",
                    location=f"line {n}",
                    name="MSExchangeFBA",
                    state="running",
                    host=host,
                )
            )
    lines = {}
    for n in range(excerpts):
        name = rng.choice(names)
        lines[f"ISALOG_20261127_WEB_000.w3c:{n}"] = (
            f"2026-11-27\t10:15:{n % 60:02d}\t{external()}\tCONTOSO\\user{n % 300}\tMozilla/4.0 (compatible; MSIE 7.0)"
            f"\t{name}\t{internal()}\t443\t15\tGET\thttps://{name}/owa/auth/logon.aspx?url=https://{name}/owa/"
            f"\t-\t64\tFailed Connection Attempt"
        )
    return EvidenceBundle(tuple(out), excerpts=lines, description="bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--facts", type=int, default=10000)
    parser.add_argument("--excerpts", type=int, default=5000)
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bundle = build(args.facts, args.excerpts, args.hosts, random.Random(7))
    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        Redactor().bundle(bundle)
        times.append(time.perf_counter() - started)
    best, median = min(times), statistics.median(times)
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}")
    print(
        f"redact {args.facts} facts + {args.excerpts} excerpt lines ({args.hosts} host names): "
        f"best {best:.3f} s, median {median:.3f} s ({args.facts / best:,.0f} facts/s) [target < 2 s]"
    )


if __name__ == "__main__":
    main()
