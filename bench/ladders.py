"""Benchmark of the second read that keeps the packets of the cited connections (capture.packets).

Generates a synthetic capture (default ~500 k packets, 26 k connections, every teardown label) as
plain Ethernet/IPv4 pcap, then times, in this process, best of --repeat on a warm page cache:

* the analysis alone (`analyse`: the first read, C accelerator when built);
* the connections chosen for the ladders (`ladders.choose`) and their packets read (`packets.record`),
  as the probe does them; and the worst case, a ladder whose connection ends at the last frame, which
  makes the second read walk the whole file.

With --pure the readers run without the C accelerator (DIAGNOSE_PURE_PYTHON semantics).

Usage: python bench/ladders.py [--connections N] [--repeat N] [--pure]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from diagnose.probes.capture import formats  # noqa: E402
from diagnose.probes.capture.analysis import analyse  # noqa: E402
from diagnose.probes.capture.ladders import choose  # noqa: E402
from diagnose.probes.capture.packets import Wanted, record  # noqa: E402
from tests.probes.capture import synth  # noqa: E402


def generate(path: Path, connections: int) -> int:
    count = 0
    with open(path, "wb") as fh:
        fh.write(synth.pcap_header(1))
        for seg in synth.conversations(connections, seed=42, concurrency=200, extra_data=4):
            fh.write(synth.pcap_record(seg.ts, synth.frame("ethernet", synth.ip_packet(seg))))
            count += 1
    return count


def best(repeat: int, fn) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=26_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pure", action="store_true", help="without the C accelerator")
    args = ap.parse_args()
    if args.pure:
        formats._fastcap = None
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
        f"accelerator: {'off' if formats._fastcap is None else 'on'}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        cap = Path(tmp) / "bench.pcap"
        packets = generate(cap, args.connections)
        print(f"capture: {packets} packets, {cap.stat().st_size / 1e6:.1f} MB, {args.connections} connections")
        first, analysis = best(args.repeat, lambda: analyse([cap], [], samples=5, jobs=1))
        print(f"analysis (first read):                 {first:7.3f} s  {packets / first / 1e6:6.2f} M packets/s")
        chosen = choose(analysis, None)  # type: ignore[arg-type]
        wanted = [c.wanted for c in chosen]
        last = max(w.last_frame for w in wanted)
        second, recs = best(args.repeat, lambda: record([cap], wanted))
        print(
            f"ladders ({len(wanted)} connections, up to frame {last}): {second:7.3f} s  "
            f"(+{second / first:.0%} of the analysis), {sum(len(r.packets) for r in recs.values())} packets kept"
        )
        conns = analysis.all_connections or [c for cs in analysis.chosen_samples().values() for c in cs]
        tail = max(conns, key=lambda c: c.last_frame)
        worst = [*wanted, Wanted(tail.source, tail.first_frame, packets)]
        whole, _ = best(args.repeat, lambda: record([cap], worst))
        print(f"ladders, worst case (to the last frame): {whole:7.3f} s  (+{whole / first:.0%} of the analysis)")


if __name__ == "__main__":
    main()
