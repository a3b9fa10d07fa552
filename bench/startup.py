"""Start-up cost of the command line: CPU and wall time of `diagnose --version`, `--help`, the probe
commands and an offline `run` on tiny inputs (so that what is measured is the interpreter, the imports
and the check catalogue, not the reading), best of --rounds, with the load average.

An installed diagnose runs from compiled bytecode; a checkout run with PYTHONDONTWRITEBYTECODE=1 (as the
sessions here are) compiles every module it imports on every run. `compiled_env` gives the environment
of the first: the bytecode written once under a private cache folder (PYTHONPYCACHEPREFIX, the tree is not
touched). The other benches use it for their `python -m diagnose` runs. --source also times the second.

    python bench/startup.py [--rounds 10] [--source]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"
NGINX_LINE = '192.0.2.7 - - [04/Mar/2024:10:00:00 +0000] "GET /owa/ HTTP/1.1" 499 0 "-" "Mozilla/5.0"\n'


def compiled_env(cache: Path) -> dict[str, str]:
    """The environment of `python -m diagnose` runs from compiled bytecode, as an installed copy runs: the
    package compiled once into `cache` (PYTHONPYCACHEPREFIX), bytecode writing allowed for what else loads."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "diagnose")],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return env


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of `argv` (its children included)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=REPO)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--source", action="store_true", help="also time runs that compile every module")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as work:
        nginx = Path(work) / "access.log"
        nginx.write_text(NGINX_LINE)
        commands = {
            "--version": ["--version"],
            "--help": ["--help"],
            "probe proxylogs (1 line)": ["probe", "proxylogs", str(nginx)],
            "run --proxy-log (1 line)": ["run", "--proxy-log", str(nginx), "--offline", "--no-input"],
        }
        tmg = CORPUS / "tmg-logs" / "isa2004_firewall_w3c_ISALOG_FWS.w3c"
        pcap = CORPUS / "pcaps" / "ppp_three_http_streams.pcap"
        if tmg.is_file():
            commands["probe logs (corpus ISA log)"] = ["probe", "logs", "--jobs", "1", str(tmg)]
        if pcap.is_file():
            commands["probe capture (28 frames)"] = ["probe", "capture", str(pcap)]
        envs = {"bytecode": compiled_env(Path(work) / "pycache")}
        if args.source:
            envs["source"] = {
                **os.environ,
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            }
        baseline = min(timed([sys.executable, "-c", "pass"])[1] for _ in range(args.rounds))
        print(
            f"python {sys.version.split()[0]}; {os.cpu_count()} cores; best of {args.rounds}; "
            f"bare interpreter: cpu {baseline * 1000:.0f} ms"
        )
        for label, env in envs.items():
            for name, argv in commands.items():
                runs = [timed([sys.executable, "-m", "diagnose", *argv], env) for _ in range(args.rounds)]
                wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
                print(f"{label:8} {name:30} cpu {cpu * 1000:5.0f} ms  wall {wall * 1000:5.0f} ms")
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
