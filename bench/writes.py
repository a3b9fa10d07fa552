"""Atomic write benchmark: what the temporary file, fsync and rename cost against a plain write.

    python bench/writes.py [--sizes 0.01,1,16,128] [--repeat 5] [--dir PATH]

For each size (MiB) the same text is written to a file in `--dir` (default: a temporary folder on the
file system of /tmp) by `diagnose.writing.write_file` (temporary file in the same folder, fsync, rename,
fsync of the folder) and by a plain `Path.write_text` (truncate and write in place, no fsync), and the
median seconds of each are printed. The difference is mostly the fsync: on tmpfs it is nearly free, on
a disk it is the time to reach the platter or flash.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from diagnose.writing import write_file  # noqa: E402


def timed(write: Callable[[Path, str], object], target: Path, text: str, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        write(target, text)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def plain(target: Path, text: str) -> None:
    target.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.01,1,16,128", help="MiB, comma-separated")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=None, help="folder to write in (default: a new temporary folder)")
    args = parser.parse_args()
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="diagnose-bench-writes-"))
    fs = os.statvfs(folder)
    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"writing in {folder} (block size {fs.f_bsize})"
    )
    print(f"{'MiB':>8} {'atomic s':>10} {'plain s':>10} {'atomic MiB/s':>13}")
    for size in (float(s) for s in args.sizes.split(",")):
        text = ("x" * 99 + "\n") * max(1, int(size * (1 << 20) / 100))
        target = folder / "bench.json"
        atomic = timed(write_file, target, text, args.repeat)
        direct = timed(plain, target, text, args.repeat)
        print(f"{size:>8g} {atomic:>10.4f} {direct:>10.4f} {size / atomic:>13.0f}")
        target.unlink()
    if not args.dir:
        folder.rmdir()


if __name__ == "__main__":
    main()
