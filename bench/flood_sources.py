"""What naming the sources of flood-mitigation denials costs the log probe.

Every flood denial is looked at one by one for its source address (LogSummary.flood_from), where
other records are only counted by key. This writes TMG W3C Firewall logs of --size-mb each in which
0 %, 10 % and 50 % of the records are flood denials (from --sources addresses, one sending half of
them), reads each with the probe's reader on one core (C accelerator, and with --pure the
pure-Python path too) and prints throughput and the distinct sources kept.

    python bench/flood_sources.py [--size-mb 100] [--sources 5000] [--rounds 3] [--pure]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from diagnose.probes.logs import scan as scan_mod  # noqa: E402
from diagnose.probes.logs import summarise  # noqa: E402
from diagnose.probes.logs.scan import Site  # noqa: E402

FIELDS = [
    "computer",
    "date",
    "time",
    "IP protocol",
    "source",
    "destination",
    "original client IP",
    "source network",
    "destination network",
    "action",
    "status",
    "rule",
    "application protocol",
    "bytes sent",
    "bytes received",
    "connection time",
]
TMG_EXTERNAL = "131.107.0.10"


def write_log(path: Path, size_mb: int, flood_share: float, sources: int, seed: int = 7) -> int:
    rnd = random.Random(seed)
    heavy = "203.0.113.7"
    others = [f"198.{51 + n // 65536 % 4}.{n // 256 % 256}.{n % 256}" for n in range(sources)]
    target = size_mb << 20
    written = records = 0
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write(
            "#Software: Microsoft Forefront Threat Management Gateway 2010\n#Version: 1.0\n"
            "#Date: 2024-05-04 09:00:00\n#Fields: " + "\t".join(FIELDS) + "\n"
        )
        while written < target:
            lines = []
            for _ in range(4096):
                second = records // 50 % 86400
                stamp = f"2024-05-04\t{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
                if rnd.random() < flood_share:
                    client = heavy if rnd.random() < 0.5 else rnd.choice(others)
                    status, action = "0xc0040037", "Denied Connection"
                else:
                    client, status, action = f"192.0.2.{rnd.randrange(1, 255)}", "0x0", "Closed Connection"
                lines.append(
                    f"TMG01\t{stamp}\tTCP\t{client}:{rnd.randrange(1024, 65535)}\t{TMG_EXTERNAL}:443\t"
                    f"{client}\tExternal\tLocal Host\t{action}\t{status}\tOWA\tHTTPS\t100\t2000\t15\n"
                )
                records += 1
            text = "".join(lines)
            fh.write(text)
            written += len(text)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--sources", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pure", action="store_true", help="time the pure-Python path too")
    args = parser.parse_args()
    accel = scan_mod._fastscan
    paths = [("C accelerator", accel)] + ([("pure Python", None)] if args.pure else [])
    site = Site(tmg_addresses=frozenset({TMG_EXTERNAL}))
    print(
        f"{'flood share':>11}  {'path':<14} {'records':>10} {'MB/s':>7} {'records/s':>11} {'denials':>9} "
        f"{'sources kept':>12}  top source"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for share in (0.0, 0.1, 0.5):
            log = Path(tmp) / f"flood-{share}.w3c"
            records = write_log(log, args.size_mb, share, args.sources)
            size = log.stat().st_size / (1 << 20)
            for label, module in paths:
                if label != "pure Python" and module is None:
                    continue
                scan_mod._fastscan = module
                best = float("inf")
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    summary, _ = summarise([str(log)], site, 1)
                    best = min(best, time.perf_counter() - started)
                denials = summary.scope("all", "all")["flood_denials"]
                top = summary.flood_sources.most_common(1)
                print(
                    f"{share:>11.0%}  {label:<14} {records:>10} {size / best:>7.1f} {records / best:>11.0f} "
                    f"{denials:>9} {len(summary.flood_sources):>12}  {top[0] if top else '-'}"
                )
            scan_mod._fastscan = accel


if __name__ == "__main__":
    main()
