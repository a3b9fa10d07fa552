"""The data tables under checks/ and the rule lint: what reading them costs.

    python bench/tables.py [--repeat 20]

Prints the CPU time (best of --repeat) to read and validate checks/exchange-endpoints.yaml and
checks/thresholds.yaml (each is read once per process), and the wall time of `diagnose rules lint`
over the shipped rule base in a fresh process. Target: each table well under 5 ms, so that reading
knowledge as data adds nothing a user notices to `diagnose run`.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from diagnose.exchange import catalogue_path, load_catalogue  # noqa: E402
from diagnose.thresholds import load_thresholds, thresholds_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for name, load, path in (
        ("endpoint table", load_catalogue, catalogue_path(())),
        ("thresholds", load_thresholds, thresholds_path(())),
    ):
        best = float("inf")
        for _ in range(args.repeat):
            load.cache_clear()
            started = time.process_time()
            load(str(path))
            best = min(best, time.process_time() - started)
        print(
            f"{name} ({path.name}): read and validated in {best * 1e3:.2f} ms CPU (best of {args.repeat})"
            "  target < 5 ms"
        )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "diagnose", "rules", "lint"], capture_output=True, text=True, cwd=REPO, check=False
    )
    print(
        f"`diagnose rules lint` (shipped rule base): {time.perf_counter() - started:.2f} s wall, "
        f"exit {done.returncode}: {done.stdout.strip().splitlines()[-1]}"
    )


if __name__ == "__main__":
    main()
