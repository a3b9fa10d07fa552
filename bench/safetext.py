"""What making output safe costs: JSON of a big bundle, and neutralising a long text report.

    python bench/safetext.py [--facts 100000] [--hostile 0.01] [--repeat 3]

A bundle of `--facts` facts (capture connections with provenance), a share `--hostile` of them with
an escape sequence, a bidi override and a byte that was not UTF-8 in their subject. Figures printed:
`safetext.to_json` against plain `json.dumps` (the cost of the check and of the escapes), and
`neutralise` over the text of a report of the same size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from diagnose.facts import EvidenceBundle, make_fact  # noqa: E402
from diagnose.safetext import neutralise, to_json  # noqa: E402


def build(facts: int, hostile: float) -> EvidenceBundle:
    every = int(1 / hostile) if hostile > 0 else 0
    out = []
    for n in range(facts):
        odd = every and n % every == 0
        subject = f"10.1.{n % 250}.{n % 200}:{40000 + n % 20000}>10.1.5.11:443"
        if odd:
            subject += "\x1b]0;x\x07\u202e\udcff"
        out.append(
            make_fact(
                "capture.connection",
                subject,
                "capture",
                source="trace.pcapng",
                location=f"frames {n}-{n + 3}",
                teardown="dirty-close",
                leg="server",
                conn_state="RSTO",
                history="fAR",
            )
        )
    return EvidenceBundle(facts=tuple(out))


def best(func: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=100_000)
    parser.add_argument("--hostile", type=float, default=0.01)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = build(args.facts, args.hostile).to_json()
    clean = build(args.facts, 0).to_json()
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}")
    plain, _ = best(lambda: json.dumps(clean, indent=1, ensure_ascii=False), args.repeat)
    safe_clean, _ = best(lambda: to_json(clean), args.repeat)
    safe_hostile, median = best(lambda: to_json(data), args.repeat)
    size = len(to_json(data)) / 1e6
    print(
        f"bundle of {args.facts:,} facts ({size:.1f} MB of JSON): json.dumps {plain:.3f} s, to_json "
        f"{safe_clean:.3f} s with nothing to escape, {safe_hostile:.3f} s (median {median:.3f} s) with "
        f"{args.hostile:.0%} hostile facts"
    )
    report = "\n".join(
        f"     - capture.connection {f['subject']} [trace.pcapng {f['provenance']['location']}]" for f in data["facts"]
    )
    took, _ = best(lambda: neutralise(report, keep="\n"), args.repeat)
    print(f"neutralise a {len(report) / 1e6:.1f} MB text report: {took:.3f} s ({len(report) / 1e6 / took:.0f} MB/s)")


if __name__ == "__main__":
    main()
