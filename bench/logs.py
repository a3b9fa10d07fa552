"""Benchmark of `diagnose probe logs` against `awk -F'\\t'` on large TMG W3C logs.

Generates a Firewall and a Web Proxy W3C log (TMG 2010 field sets, Exchange publishing traffic with
Status 64, graceful closes, denials, refused connections, Outlook Anywhere channels) of at least
--size-mb each, then prints for each file: awk's throughput aggregating action x status, the probe's
throughput on one core and on all (2) cores, and the peak memory of the probe's process tree.

Both read the same file from a warm page cache. Each is run --rounds times, interleaved (awk, one
core, two cores, awk, ...), and the best run of each is reported, so a burst of other work on a
shared machine does not land on one side only. Beside wall-clock time the CPU time (user + system,
the process and its workers) is printed: on a busy machine it shows the work each side does even
when it had to wait for a core.

    python bench/logs.py [--size-mb 500] [--rounds 3] [--dir DIR] [--keep] [--pure]

A CSV export of the SQL Express FirewallLog table (--csv-mb, default 100 MB) is timed as well: that
format is parsed record by record, so it is far slower than W3C.

With --pure, the pure-Python path (DIAGNOSE_PURE_PYTHON=1, no C accelerator) is timed as well.

With --dir and --keep, files already generated there (same size and seed) are read again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.startup import compiled_env  # noqa: E402
from diagnose.probes.logs.layout import FIREWALL_TMG, WEB_TMG  # noqa: E402

AWK_SCRIPT = "!/^#/ {{ c[${a} FS ${s}]++ }} END {{ for (k in c) print k, c[k] }}"


def _firewall_rest(rng: random.Random) -> list[str]:
    """Pre-rendered Firewall rows after date/time (TMG 2010 fields, all enabled)."""
    rows = []
    for _ in range(4000):
        client = f"198.51.100.{rng.randint(1, 254)}"
        kind = rng.choices(["in", "out_est", "out_close", "s64", "deny", "refused"], [30, 25, 25, 8, 10, 2])[0]
        if kind == "in":
            src, dst, sn, dn, act, st = (
                f"{client}:{rng.randint(1024, 65535)}",
                "192.0.2.10:443",
                "External",
                "Local Host",
                rng.choice(["Establish", "Terminate"]),
                rng.choice(["0x0", "0x80074e20"]),
            )
        elif kind == "deny":
            src, dst, sn, dn, act, st = (
                f"{client}:{rng.randint(1024, 65535)}",
                f"192.0.2.10:{rng.choice([25, 3389, 445])}",
                "External",
                "Local Host",
                "Denied",
                "0xc004000d",
            )
        else:
            src = f"10.0.0.1:{rng.randint(1024, 65535)}"
            dst = f"10.0.0.{rng.randint(20, 22)}:443"
            sn, dn = "Local Host", "Internal"
            act, st = {
                "out_est": ("Establish", "0x0"),
                "out_close": ("Terminate", "0x80074e20"),
                "s64": ("Failed", "0x80070040"),
                "refused": ("Failed", "0x8007274d"),
            }[kind]
        values = {
            "computer": "TMG01",
            "IP protocol": "TCP",
            "source": src,
            "destination": dst,
            "original client IP": client,
            "source network": sn,
            "destination network": dn,
            "action": act,
            "status": st,
            "rule": "Publish Exchange Web Client Access",
            "application protocol": "HTTPS Server",
            "bidirectional": "-",
            "bytes sent": str(rng.randint(0, 90000)),
            "bytes sent intermediate": "0",
            "bytes received": str(rng.randint(0, 90000)),
            "bytes received intermediate": "0",
            "connection time": str(rng.randint(0, 900000)),
            "connection time intermediate": "0",
            "destination name": "cas01.contoso.local",
            "username": "-",
            "agent": "-",
            "session ID": str(rng.randint(1, 9999)),
            "connection ID": str(rng.randint(1, 9999999)),
            "interface": "-",
            "IP header": "-",
            "protocol payload": "-",
            "GMT Time": "",
            "NATAddress": "::",
            "FwcVersion": "-",
        }
        rows.append("\t".join(values.get(f, "-") for f in FIREWALL_TMG[3:]))
    return rows


def _web_parts(rng: random.Random) -> list[tuple[str, str]]:
    """(fields before date, fields after time) of Web Proxy rows (TMG 2010 field set)."""
    rows = []
    agents = [
        "MSRPC",
        "Microsoft Office/14.0 (Windows NT 6.1; Microsoft Outlook 14.0.7109; Pro)",
        "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
        "Apple-iPhone5C1/1102.55400",
    ]
    for _ in range(4000):
        client = f"198.51.100.{rng.randint(1, 254)}"
        kind = rng.choices(["oa", "owa", "eas", "s64", "502", "auth"], [40, 25, 15, 10, 2, 8])[0]
        method, uri, status, action, taken = "GET", "https://mail.contoso.com/owa/", "200", "Allowed", "31"
        if kind in ("oa", "s64"):
            method = rng.choice(["RPC_IN_DATA", "RPC_OUT_DATA"])
            port = rng.choice([6001, 6002, 6004])
            uri = f"https://mail.contoso.com/rpc/rpcproxy.dll?cas01.contoso.local:{port}"
            taken = str(rng.randint(1000, 1800000))
            if kind == "s64":
                status, action = "64", "Failed"
        elif kind == "eas":
            method, uri = (
                "POST",
                "https://mail.contoso.com/Microsoft-Server-ActiveSync?Cmd=Ping&DeviceType=iPhone",
            )
        elif kind == "502":
            status, action = "502", "Failed"
        elif kind == "auth":
            status, action = "401", "Allowed"
        values = {
            "c-ip": client,
            "cs-username": rng.choice(["anonymous", "CONTOSO\\jdoe", "CONTOSO\\asmith"]),
            "c-agent": rng.choice(agents),
            "sc-authenticated": "Y",
            "s-svcname": "w3reverseproxy",
            "s-computername": "TMG01",
            "r-host": "mail.contoso.com",
            "r-ip": f"10.0.0.{rng.randint(20, 22)}",
            "r-port": "443",
            "time-taken": taken,
            "cs-bytes": str(rng.randint(200, 9000)),
            "sc-bytes": str(rng.randint(200, 90000)),
            "cs-protocol": "https",
            "cs-transport": "TCP",
            "s-operation": method,
            "cs-uri": uri,
            "cs-mime-type": "application/rpc",
            "s-object-source": "Inet",
            "sc-status": status,
            "s-cache-info": "0x0",
            "rule": "Publish Exchange Web Client Access",
            "FilterInfo": f"Req ID: {rng.randint(0, 0xFFFFFFF):08x}; Compression: client=No, server=No, "
            "compress rate=0% decompress rate=0%",
            "cs-Network": "External",
            "sc-Network": "Internal",
            "error-info": "0x0",
            "action": action,
            "AuthenticationServer": "-",
            "NATAddress": "192.0.2.10",
            "client source port": str(rng.randint(1024, 65535)),
        }
        names = WEB_TMG
        di = names.index("date")
        rows.append(
            (
                "\t".join(values.get(f, "-") for f in names[:di]),
                "\t".join(values.get(f, "-") for f in names[di + 2 :]),
            )
        )
    return rows


def generate(path: Path, kind: str, size: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    names = FIREWALL_TMG if kind == "firewall" else WEB_TMG
    header = (
        "#Software: Microsoft Forefront Threat Management Gateway\n#Version: 2.0\n"
        f"#Date: 2024-03-04 00:00:00\n#Fields: {chr(9).join(names)}\n"
    )
    fw = _firewall_rest(rng) if kind == "firewall" else []
    web = _web_parts(rng) if kind == "web" else []
    written = 0
    second = 0
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write(header)
        while written < size:
            batch = []
            for _ in range(2000):
                second += 1
                day = 4 + second // 86400
                stamp = f"2024-03-{day:02d}\t{second // 3600 % 24:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
                for _ in range(rng.randint(1, 12)):
                    if kind == "firewall":
                        row = f"TMG01\t{stamp}\t{rng.choice(fw)}"
                    else:
                        pre, post = rng.choice(web)
                        row = f"{pre}\t{stamp}\t{post}"
                    batch.append(row)
            text = "\n".join(batch) + "\n"
            out.write(text)
            written += len(text)


SQL_HEADER = (
    "servername,logTime,protocol,SourceIP,SourcePort,DestinationIP,DestinationPort,OriginalClientIP,"
    "SourceNetwork,DestinationNetwork,Action,resultcode,rule,ApplicationProtocol,bytessent,bytesrecvd,"
    "connectiontime,DestinationName,ClientUserName,GmtLogTime"
)


def generate_sql_csv(path: Path, size: int, seed: int = 7) -> None:
    """A CSV export of TMG's SQL Express FirewallLog table: addresses as TMG stores them (GUID-like
    strings whose first group is the IPv4 address), result codes as signed HRESULTs, local and GMT
    times with milliseconds, a quoted rule name holding a comma."""
    rng = random.Random(seed)

    def guid(a: int, b: int, c: int, d: int) -> str:
        return f"{a:02X}{b:02X}{c:02X}{d:02X}-FFFF-0000-0000-000000000000"

    codes = ["0", "0", "0", "-2147024832", "-2147014835", "-2147463648", "-2147014852"]
    actions = ["10", "10", "1", "2", "3"]
    written, second = 0, 0
    with open(path, "w", encoding="utf-8", newline="\r\n") as out:
        out.write(SQL_HEADER + "\n")
        while written < size:
            batch = []
            for _ in range(2000):
                second += 1
                local = f"2024-03-04 {second // 3600 % 24:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
                for _ in range(rng.randint(1, 12)):
                    ms = f".{rng.randint(0, 999):03d}"
                    gmt = f"2024-03-04 {(second // 3600 - 1) % 24:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
                    batch.append(
                        f"TMG01,{local}{ms},TCP,{guid(10, 0, 0, 1)},{rng.randint(1024, 65535)},"
                        f"{guid(10, 0, 0, rng.randint(20, 22))},443,{guid(198, 51, 100, rng.randint(1, 254))},"
                        f"Local Host,Internal,{rng.choice(actions)},{rng.choice(codes)},"
                        f'"Publish Exchange, OWA",HTTPS Server,{rng.randint(0, 99999)},{rng.randint(0, 99999)},'
                        f"{rng.randint(0, 900000)},cas01.contoso.local,anonymous,{gmt}{ms}"
                    )
            text = "\n".join(batch) + "\n"
            out.write(text)
            written += len(text)


class Peak:
    """Peak resident memory of a process and its children, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0

    def sample(self) -> None:
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        self.peak = max(self.peak, total)


@dataclass(frozen=True)
class Run:
    wall: float  # seconds
    cpu: float  # user + system seconds of the process and every child it waited for
    peak: int  # bytes
    out: str


def timed(cmd: list[str], env: dict[str, str] | None = None) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, text=True, env=env)
    peak = Peak(proc.pid)
    while proc.poll() is None:
        peak.sample()
        time.sleep(0.02)
    out, err = proc.communicate()
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {err.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(elapsed, cpu, peak.peak, out)


def best(runs: list[Run]) -> Run:
    fastest = min(runs, key=lambda r: r.wall)
    return Run(fastest.wall, min(r.cpu for r in runs), max(r.peak for r in runs), fastest.out)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, best reported")
    parser.add_argument("--csv-mb", type=int, default=100, help="size of the SQL-export CSV timed too (0: none)")
    parser.add_argument("--pure", action="store_true", help="also time the pure-Python path (no C accelerator)")
    args = parser.parse_args()
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="diagnose-bench-logs-"))
    workdir.mkdir(parents=True, exist_ok=True)
    awk = shutil.which("awk") or "awk"
    print(
        f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total >> 20} MB RAM, python "
        f"{sys.version.split()[0]}, awk = {os.path.realpath(awk)}"
    )
    from diagnose.probes.logs import scan

    installed = compiled_env(workdir / "pycache")  # the reader as installed: from compiled bytecode

    print(f"C accelerator: {'built, ' + scan._fastscan.__file__ if scan._fastscan else 'NOT BUILT (pure Python)'}")
    try:
        for kind, tag in (("firewall", "FWS"), ("web", "WEB")):
            path = workdir / f"ISALOG_20240304_{tag}_000.w3c"
            t0 = time.perf_counter()
            reused = args.keep and args.dir is not None and _generated(path, kind, args.size_mb << 20)
            if not reused:
                generate(path, kind, args.size_mb << 20)
                path.with_suffix(".size").write_text(f"{kind} {args.size_mb << 20} {path.stat().st_size}")
            size = path.stat().st_size
            mb = size / 1e6
            names = FIREWALL_TMG if kind == "firewall" else WEB_TMG
            a, s = names.index("action") + 1, names.index("status" if kind == "firewall" else "sc-status") + 1
            print(
                f"\n{kind}: {path.name} {mb:.0f} MB, {len(names)} fields, "
                + ("reused" if reused else f"generated in {time.perf_counter() - t0:.1f} s")
                + f"; load average {_load()}"
            )
            subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
            awk_cmd = [awk, "-F\t", AWK_SCRIPT.format(a=a, s=s), str(path)]
            variants = {  # label: (jobs, pure Python)
                "--jobs 1": (1, False),
                "--jobs 2": (2, False),
                "--jobs 1, pure Python": (1, True),
                "--jobs 2, pure Python": (2, True),
            }
            if not args.pure:
                variants = {k: v for k, v in variants.items() if not v[1]}
            runs: dict[str, list[Run]] = {"awk": [], **{label: [] for label in variants}}
            for _ in range(args.rounds):
                runs["awk"].append(timed(awk_cmd))
                for label, (jobs, pure) in variants.items():
                    cmd = [sys.executable, "-m", "diagnose", "probe", "logs", str(path), "--format", "json"]
                    env = {**installed, "DIAGNOSE_PURE_PYTHON": "1"} if pure else installed
                    runs[label].append(timed([*cmd, "--jobs", str(jobs)], env))
            awk_run = best(runs["awk"])
            awk_s64 = sum(
                int(line.rsplit(" ", 1)[1])
                for line in awk_run.out.splitlines()
                if line.split("\t")[1].split(" ")[0] in ("0x80070040", "64")
            )
            print(
                f"  awk -F'\\t' action x status     : {awk_run.wall:6.2f} s  {mb / awk_run.wall:7.1f} MB/s  "
                f"cpu {awk_run.cpu:5.2f} s  peak {awk_run.peak >> 20} MB  (Status 64: {awk_s64})"
            )
            for label in variants:
                run = best(runs[label])
                facts = json.loads(run.out)["facts"]
                s64 = next(f["attrs"]["status64_count"] for f in facts if f["subject"] == "all")
                print(
                    f"  probe logs {label:21}: {run.wall:6.2f} s  {mb / run.wall:7.1f} MB/s  "
                    f"cpu {run.cpu:5.2f} s  peak {run.peak >> 20} MB  = {awk_run.wall / run.wall:.2f} x awk "
                    f"(cpu: {awk_run.cpu / run.cpu:.2f} x)  (Status 64: {s64}"
                    f"{'' if s64 == awk_s64 else ' MISMATCH'})"
                )
            print(f"  best of {args.rounds} interleaved rounds; load average now {_load()}")
            if not args.keep:
                path.unlink()
                path.with_suffix(".size").unlink(missing_ok=True)
        if args.csv_mb:
            path = workdir / "FirewallLog.csv"
            t0 = time.perf_counter()
            if not (args.keep and path.exists() and path.stat().st_size >= args.csv_mb << 20):
                generate_sql_csv(path, args.csv_mb << 20)
            mb = path.stat().st_size / 1e6
            print(f"\nSQL Express export (CSV): {path.name} {mb:.0f} MB, ready in {time.perf_counter() - t0:.1f} s")
            subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)
            cmd = [sys.executable, "-m", "diagnose", "probe", "logs", str(path), "--format", "json", "--jobs"]
            csv_runs: dict[int, list[Run]] = {1: [], 2: []}
            for _ in range(args.rounds):
                for jobs, kept in csv_runs.items():
                    kept.append(timed([*cmd, str(jobs)], installed))
            for jobs, kept in csv_runs.items():
                run = best(kept)
                attrs = json.loads(run.out)["facts"][0]["attrs"]
                records, s64 = attrs["records"], attrs["status64_count"]
                print(
                    f"  probe logs --jobs {jobs}: {run.wall:6.2f} s  {mb / run.wall:7.1f} MB/s  "
                    f"{records / run.wall / 1e3:.0f} k records/s  cpu {run.cpu:5.2f} s  peak {run.peak >> 20} MB  "
                    f"(records {records}, Status 64 {s64})"
                )
            if not args.keep:
                path.unlink()
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _generated(path: Path, kind: str, size: int) -> bool:
    """A file this script generated earlier with the same kind and size (the seed is fixed)."""
    marker = path.with_suffix(".size")
    try:
        return path.is_file() and marker.read_text() == f"{kind} {size} {path.stat().st_size}"
    except OSError:
        return False


if __name__ == "__main__":
    main()
