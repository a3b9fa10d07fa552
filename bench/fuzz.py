"""Run the reader fuzzer longer than CI does, and print what it found and how fast.

    python bench/fuzz.py --cases 500 --seed 1 [--reader logs] [--keep DIR]

Each case is a seeded mutation of a real-format input read through the real CLI (see
tests/fuzzing.py); the figures are cases per second, the slowest case and the highest peak memory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import fuzzing
from tests.conftest import CORPUS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200, help="cases per reader")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reader", action="append", choices=fuzzing.READERS)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="folder to keep failing cases in")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="diagnose-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    seeds = fuzzing.seed_inputs(work / "seeds", CORPUS if CORPUS.is_dir() else None)
    failures = 0
    for reader in args.reader or fuzzing.READERS:
        start = time.monotonic()
        cases = list(fuzzing.cases(reader, args.cases, seeds[reader], work, args.seed))
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            outcomes = list(pool.map(lambda case: fuzzing.run_case(case, work), cases))
        took = time.monotonic() - start
        bad = [o for o in outcomes if o.problems]
        failures += len(bad)
        slowest = max(outcomes, key=lambda o: o.seconds)
        print(
            f"{reader:9} {len(cases):5} cases  {len(cases) / took:6.1f} cases/s  failed {len(bad):3}  "
            f"slowest {slowest.seconds:5.1f} s  peak {max(o.peak_mb for o in outcomes):6.1f} MB"
        )
        for outcome in bad:
            print("   ", outcome.describe())
    for outcome in (fuzzing.run_case(case, work) for case in fuzzing.bomb_cases(work)):
        print(
            f"bomb {outcome.case.path.name:28} {outcome.seconds:5.1f} s  peak {outcome.peak_mb:6.1f} MB  "
            f"{'; '.join(outcome.problems) or 'ok'}"
        )
        failures += bool(outcome.problems)
    print(f"cases kept in {work}" if failures else "no failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
