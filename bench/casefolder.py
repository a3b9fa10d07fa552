"""Benchmark of the case-folder survey (`diagnose analyze DIR|ZIP`): how long recognising the files takes.

Builds a case folder as support engineers get them: per TMG array member a folder with the seed log
(copied N times under odd names), every services/host/DNS export of tests/data, junk (Word files,
screenshots, notes), a 200 MiB W3C log (only its head is read to recognise it), and the same tree as a
zip; then times `survey()` of the folder and of the zip (unpacking included), best of --repeat, and
prints the files taken and skipped per second. The load average is printed first (the machine may be
shared).

Usage: python bench/casefolder.py [--members N] [--copies N] [--big-mib N] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diagnose.casefolder import survey  # noqa: E402


def build(root: Path, members: int, copies: int, big_mib: int) -> Path:
    case = root / "case"
    seed = (ROOT / "examples" / "seed" / "ISALOG_20110504_FWS_000.w3c").read_bytes()
    exports = [
        p
        for d in ("services", "host", "dns")
        for p in sorted((ROOT / "tests" / "data" / d).glob("*"))
        if p.suffix != ".md"
    ]
    for m in range(members):
        node = case / f"TMG{m:02d}" / "exported logs"
        node.mkdir(parents=True)
        for c in range(copies):
            (node / f"log ({c}).txt").write_bytes(seed)
        for p in exports:
            shutil.copy(p, node.parent / f"{p.stem}-{m}")
        (node.parent / "ticket.docx").write_bytes(b"PK\x05\x06" + bytes(18))
        (node.parent / "shot.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(1000))
        (node.parent / "notes.txt").write_text("customer says it broke on Monday\n")
    head, _, rest = seed.partition(b"\n#Fields:")
    fields, _, rows = rest.partition(b"\n")
    with open(case / "big.w3c", "wb") as fh:
        fh.write(head + b"\n#Fields:" + fields + b"\n")
        block = rows * max(1, (1 << 20) // max(len(rows), 1))
        while fh.tell() < big_mib << 20:
            fh.write(block)
    archive = root / "case.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(case.rglob("*")):
            if p.is_file() and p.name != "big.w3c":
                z.write(p, p.relative_to(case).as_posix())
    return case


def best(repeat: int, target: Path) -> tuple[float, int, int]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        with survey([str(target)]) as case:
            taken, skipped = len(case.taken), len(case.skipped)
        times.append(time.perf_counter() - started)
    return min(times), taken, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--copies", type=int, default=25)
    parser.add_argument("--big-mib", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-casefolder-") as tmp:
        case = build(Path(tmp), args.members, args.copies, args.big_mib)
        for label, target in (("folder", case), ("zip (no big log)", Path(tmp) / "case.zip")):
            seconds, taken, skipped = best(args.repeat, target)
            files = taken + skipped
            print(
                f"{label:<17} {files:>5} files ({taken} taken, {skipped} skipped) in {seconds:.3f} s "
                f"= {files / seconds:,.0f} files/s"
            )


if __name__ == "__main__":
    main()
