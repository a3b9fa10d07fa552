"""Benchmark of the capture probe against tshark.

Generates a synthetic capture (default ~1 M packets, 52 k TCP connections, 200 open at a time, every
teardown label) as plain Ethernet/IPv4 pcap and as 802.1Q-tagged pcap (which goes through the general
link-layer decoder), then times, in the same run:

* `diagnose probe capture FILE` (a subprocess, like a user; wall time incl. start-up) with one
  worker process (`--jobs 1`) and with every CPU (`--jobs N`, each worker tracking its share of the
  connections), and the analysis alone in this process, both ways;
* with --pure, the same with the pure-Python readers as well (DIAGNOSE_PURE_PYTHON=1: no C
  accelerator), in the same rounds, and a check that both ways give the same facts (every connection);
* `tshark -q -z conv,tcp -r FILE`;
* `diagnose` runs with its modules compiled to bytecode once, as an installed package has them (into
  a cache directory of the bench: PYTHONDONTWRITEBYTECODE, where set, would make every start compile
  them); the whole command is also timed compiling at every start, unless --compile-each-start makes
  that the only way;
* peak memory (max RSS) of the `diagnose` processes (the workers' peaks added), on the whole file
  and on its first quarter: with the same number of live connections, memory must not grow with
  the number of packets.

Every figure is the best of `--repeat` runs on a warm page cache; the load average before each
block is printed (the machine may be shared).

Usage: python bench/capture.py [--connections N] [--keep DIR] [--reuse] [--repeat N] [--no-tshark]
                               [--compile-each-start] [--pure]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from diagnose.probes.capture import formats  # noqa: E402
from diagnose.probes.capture.analysis import analyse, cpu_count  # noqa: E402
from tests.probes.capture import synth  # noqa: E402


def generate(directory: Path, connections: int) -> tuple[Path, Path, Path, int]:
    plain, tagged, quarter = directory / "bench-eth.pcap", directory / "bench-vlan.pcap", directory / "quarter.pcap"
    count = 0
    with open(plain, "wb") as f1, open(tagged, "wb") as f2, open(quarter, "wb") as f3:
        for fh in (f1, f2, f3):
            fh.write(synth.pcap_header(1))
        target_quarter = None
        for seg in synth.conversations(connections, seed=42, concurrency=200, extra_data=4):
            ip = synth.ip_packet(seg)
            eth = synth.frame("ethernet", ip)
            rec = synth.pcap_record(seg.ts, eth)
            f1.write(rec)
            f2.write(synth.pcap_record(seg.ts, synth.frame("vlan", ip)))
            if target_quarter is None or count < target_quarter:
                f3.write(rec)
            count += 1
            if count == 1:
                target_quarter = connections * 19 // 4
    return plain, tagged, quarter, count


def _hwm(pid: int) -> int:
    """The process's peak resident set (VmHWM) in bytes; 0 once it has gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for text in fh:
                if text.startswith("VmHWM:"):
                    return int(text.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


# Environment of the measured `diagnose` runs (set in main): by default the project's modules are
# compiled to bytecode once (into a cache directory of the bench, not the source tree), as an installed
# package has them, even where PYTHONDONTWRITEBYTECODE is set; --compile-each-start keeps that setting.
RUN_ENV: dict[str, str] = {}


def bytecode_env(directory: Path, cached: bool) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if cached:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(directory / "pycache")
    return env


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process and the workers it starts (added).

    The peak is read from /proc/PID/status (VmHWM) while the child runs: `ru_maxrss` of a child
    would include the high-water mark this (big) parent had when it forked.
    """
    env = env or RUN_ENV or dict(os.environ, PYTHONPATH=str(REPO))
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peaks: dict[int, int] = {}
    while True:
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
        if pid:
            break
        for p in (proc.pid, *_children(proc.pid)):
            peaks[p] = max(peaks.get(p, 0), _hwm(p))
        time.sleep(0.005)
    peak = sum(peaks.values())
    elapsed = time.perf_counter() - started
    if status != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(cmd)} failed: {err}")
    return elapsed, peak


def best_of(n: int, cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    runs = [run_measured(cmd, env) for _ in range(n)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def best_interleaved(n: int, cmds: dict, env_of) -> dict:
    """{key: (best wall seconds, highest peak RSS)} of the commands `cmds` {key: (argv, pure)}, run in
    turn in each of `n` rounds (neighbours on a shared machine weigh on every variant alike)."""
    runs: dict = {key: [] for key in cmds}
    for _ in range(n):
        for key, (argv, pure) in cmds.items():
            runs[key].append(run_measured(argv, env_of(pure)))
    return {key: (min(r[0] for r in rs), max(r[1] for r in rs)) for key, rs in runs.items()}


def same_facts(cmd: list[str], path: Path, jobs: int, directory: Path, env_of) -> bool:
    """Whether the command gives the same facts (every connection) with and without the accelerator."""
    import json

    outs = []
    for pure in (False, True):
        out = directory / f"facts-{int(pure)}.json"
        subprocess.run(
            [*cmd, "--connections", "--jobs", str(jobs), "-o", str(out), str(path)],
            check=True,
            stdout=subprocess.DEVNULL,
            env=env_of(pure),
        )
        facts = json.loads(out.read_text())["facts"]
        out.unlink()
        for fact in facts:
            fact["provenance"].pop("time", None)
        outs.append(facts)
    return outs[0] == outs[1] and len(outs[0]) > 0


def load() -> str:
    return f"load average {os.getloadavg()[0]:.2f}"


def line(name: str, seconds: float, packets: int, size: int, rss: int | None = None) -> str:
    text = f"{name:<46} {seconds:7.2f} s  {packets / seconds / 1e6:6.2f} M packets/s  {size / seconds / 1e6:7.1f} MB/s"
    return text + (f"  peak RSS {rss / 1e6:6.1f} MB" if rss else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=52_000)
    parser.add_argument("--keep", type=Path, help="write the captures here and keep them")
    parser.add_argument("--reuse", action="store_true", help="use the captures already in --keep DIR")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is shown")
    parser.add_argument("--no-tshark", action="store_true")
    parser.add_argument(
        "--compile-each-start",
        action="store_true",
        help="no bytecode cache for diagnose's modules when PYTHONDONTWRITEBYTECODE is set (every start compiles them)",
    )
    parser.add_argument(
        "--pure",
        action="store_true",
        help="also time the pure-Python readers (DIAGNOSE_PURE_PYTHON=1, no C accelerator)",
    )
    args = parser.parse_args()
    directory = args.keep or Path(tempfile.mkdtemp(prefix="bench-capture-"))
    directory.mkdir(parents=True, exist_ok=True)
    cpus = cpu_count()
    print(
        f"machine: {platform.machine()} {cpus} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}, {load()}"
    )
    accel = formats._fastcap
    print(f"C accelerator: {'built, ' + accel.__file__ if accel else 'NOT BUILT (pure Python)'}")
    modes = [False, True] if args.pure and accel else [False]  # pure Python?
    tag = {False: "C" if accel else "pure", True: "pure"}
    t0 = time.perf_counter()
    plain, tagged, quarter = (directory / "bench-eth.pcap", directory / "bench-vlan.pcap", directory / "quarter.pcap")
    if args.reuse and plain.exists() and tagged.exists() and quarter.exists():
        packets = sum(1 for _ in _records(plain))
        print(f"reusing {packets} packets from {directory}")
    else:
        plain, tagged, quarter, packets = generate(directory, args.connections)
        print(
            f"generated {packets} packets, {args.connections} connections, {plain.stat().st_size / 1e6:.0f} MB "
            f"in {time.perf_counter() - t0:.1f} s ({directory})"
        )
    size, vsize = plain.stat().st_size, tagged.stat().st_size
    for path in (plain, tagged, quarter):  # warm the page cache
        with open(path, "rb") as fh:
            while fh.read(1 << 24):
                pass
    cmd = [sys.executable, "-m", "diagnose", "probe", "capture", "--format", "json", "-o", os.devnull]
    n = max(1, args.repeat)
    compiling = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    RUN_ENV.update(bytecode_env(directory, not args.compile_each_start))
    if compiling and not args.compile_each_start:
        run_measured([*cmd, "--jobs", "1", str(quarter)])  # writes the bytecode cache
        print(
            f"bytecode: diagnose's modules compiled once into {directory / 'pycache'} (as installed); "
            "PYTHONDONTWRITEBYTECODE is set here, so a figure with compiling at every start follows too"
        )

    # the analysis alone, in this process (no interpreter start-up)
    print(f"-- analysis in this process, best of {n} ({load()})")
    for name, path, sz in (("Ethernet/IPv4", plain, size), ("802.1Q", tagged, vsize)):
        for jobs in sorted({1, cpus}):
            best = {pure: (float("inf"), 0.0, 0) for pure in modes}
            for _ in range(n):
                for pure in modes:
                    formats._fastcap = None if pure else accel
                    t, cpu = time.perf_counter(), time.process_time()
                    result = analyse([path], jobs=jobs)
                    took = (time.perf_counter() - t, time.process_time() - cpu, sum(result.counts.values()))
                    best[pure] = min(best[pure], took)
            formats._fastcap = accel
            for pure in modes:
                wall, cpu, conns = best[pure]
                # CPU time of this process too: on a shared machine, wall time also measures the neighbours
                print(
                    line(f"in-process {jobs} worker{'s' if jobs > 1 else ''}, {name}, {tag[pure]}", wall, packets, sz)
                    + f"  [{conns} connections; this process's CPU {cpu:.2f} s]"
                )

    print(f"-- diagnose probe capture (whole command), best of {n}, variants in turn ({load()})")

    def env_of(pure: bool) -> dict[str, str]:
        return {**RUN_ENV, "DIAGNOSE_PURE_PYTHON": "1"} if pure else RUN_ENV

    variants = {
        (name, jobs, pure): ([*cmd, "--jobs", str(jobs), str(path)], pure)
        for name, path in (("Ethernet/IPv4", plain), ("802.1Q", tagged))
        for jobs in sorted({1, cpus})
        for pure in modes
    }
    got = best_interleaved(n, variants, env_of)
    for (name, jobs, pure), (seconds, peak) in got.items():
        print(
            line(
                f"diagnose probe capture --jobs {jobs}, {name}, {tag[pure]}",
                seconds,
                packets,
                size if name == "Ethernet/IPv4" else vsize,
                peak,
            )
        )
    secs = {jobs: got["Ethernet/IPv4", jobs, False][0] for jobs in sorted({1, cpus})}
    rss = {jobs: got["Ethernet/IPv4", jobs, False][1] for jobs in sorted({1, cpus})}
    secs_c = None
    if compiling and not args.compile_each_start:
        secs_c, _rss = best_of(n, [*cmd, "--jobs", str(cpus), str(plain)], bytecode_env(directory, False))
        print(line(f"  --jobs {cpus}, Ethernet/IPv4, {tag[False]}, compiling at every start", secs_c, packets, size))
    if len(modes) == 2:
        print(
            "C accelerator speed-up (whole command): "
            + ", ".join(
                f"x{got[name, jobs, True][0] / got[name, jobs, False][0]:.2f} {name} --jobs {jobs}"
                for name in ("Ethernet/IPv4", "802.1Q")
                for jobs in sorted({1, cpus})
            )
        )
        print(
            "same facts with and without the accelerator (every connection): "
            + ", ".join(
                f"--jobs {jobs} {'yes' if same_facts(cmd[:-2], plain, jobs, directory, env_of) else 'NO'}"
                for jobs in sorted({1, cpus})
            )
        )
    qpackets = sum(1 for _ in _records(quarter))
    secs_q, rss_q = best_of(n, [*cmd, "--jobs", str(cpus), str(quarter)])
    print(
        line(
            f"diagnose probe capture --jobs {cpus}, first {qpackets} packets",
            secs_q,
            qpackets,
            quarter.stat().st_size,
            rss_q,
        )
    )
    print(
        f"memory: {rss_q / 1e6:.1f} MB for {qpackets} packets vs {rss[cpus] / 1e6:.1f} MB for {packets} packets "
        f"(x{rss[cpus] / rss_q:.2f} for x{packets / qpackets:.1f} packets; same 200 live connections)"
    )
    if not args.no_tshark and shutil.which("tshark"):
        print(f"-- tshark, best of {n} ({load()})")
        secs_t, rss_t = best_of(n, ["tshark", "-q", "-z", "conv,tcp", "-r", str(plain)])
        print(line("tshark -q -z conv,tcp, Ethernet/IPv4", secs_t, packets, size, rss_t))
        print(
            "speed-up over tshark (whole command): "
            + ", ".join(f"x{secs_t / secs[j]:.1f} with --jobs {j}" for j in sorted(secs))
            + (f" (x{secs_t / secs_c:.1f} with --jobs {cpus} compiling at every start)" if secs_c else "")
            + f"; tshark peak RSS {rss_t / 1e6:.0f} MB"
        )
    print(f"({load()} at the end)")
    if not args.keep:
        shutil.rmtree(directory)


def _records(path: Path):
    import struct

    with open(path, "rb") as fh:
        data = fh.read()
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        off += 16 + incl
        yield off


if __name__ == "__main__":
    main()
