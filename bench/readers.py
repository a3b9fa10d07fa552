"""The scale edges and hostile inputs of the evidence readers: time and peak memory of each.

Each case is made in a temporary folder, then read by `diagnose` in a fresh process (so its peak
resident memory is its own); the script prints wall-clock seconds and peak RSS per case:

* logs in a zip of --members members (default 4,000): linear in the members (the archive's central
  directory is read once, not once per member);
* a pcapng of --interfaces interface blocks (default 100,000), each followed by one packet, read by
  the C accelerator and by the pure-Python readers (DIAGNOSE_PURE_PYTHON=1);
* an evidence bundle of --facts facts (default 1,000,000): refused at once (`bounds.MAX_BUNDLE_FACTS`),
  and one at the bound loaded and checked;
* a gzip'd log of --bomb-mb MB of zeros between two records (a decompression bomb): read up to the
  inflate bound; a plain log with one --line-mb MB line: skipped as a bad line;
* a gzip'd capture read by two workers: decompressed once (the temporary folder's high-water mark).

    python bench/readers.py [--members 4000] [--interfaces 100000] [--facts 1000000]
                            [--bomb-mb 4096] [--line-mb 512] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from diagnose import bounds  # noqa: E402
from tests.probes.capture import synth  # noqa: E402

FW = (
    "#Software: Microsoft Forefront Threat Management Gateway\n#Version: 1.0\n"
    "#Fields: date\ttime\taction\tsource\tdestination\tstatus\n"
)
ROW = "2024-03-04\t10:00:{s:02d}\tClosed Connection\t198.51.100.7:50000\t10.0.0.10:443\t0x80074e20\n"


def measure(code: str, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, last output line) of `code` run in a fresh interpreter."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )
    elapsed = time.monotonic() - started
    if proc.returncode:
        return elapsed, 0.0, "FAILED: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
    out = proc.stdout.strip().splitlines()
    peak = float(out[-1]) if out else 0.0
    return elapsed, peak, out[-2] if len(out) > 1 else ""


# the high-water mark of the child's own memory (ru_maxrss would keep the parent's across exec)
PEAK = (
    "import resource\ntry:\n    print(next(int(l.split()[1]) for l in open('/proc/self/status') "
    "if l.startswith('VmHWM:')) / 1024)\nexcept OSError:\n"
    "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
)


def logs_code(path: Path) -> str:
    return (
        "from diagnose.probes.logs import summarise\nfrom diagnose.probes.logs.scan import Site\n"
        f"s, p = summarise([{str(path)!r}], Site(), 2)\n"
        "print(f'{s.records} records, {len(s.files)} files, {s.bad_lines} bad lines, "
        "{s.unreadable} not read to the end')\n" + PEAK
    )


def zip_case(folder: Path, members: int) -> None:
    path = folder / "logs.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(members):
            archive.writestr(f"ISALOG_20240304_FWS_{i:05d}.w3c", FW + ROW.format(s=i % 60))
    report(f"zip of {members:,} log members", *measure(logs_code(path)))


def pcapng_case(folder: Path, interfaces: int) -> None:
    path = folder / "interfaces.pcapng"
    seg = synth.Segment(0.0, "10.1.0.1", "10.0.0.10", 40000, 443, 0x02, 1, 0, 65535, 0, 0)
    packet = synth.frame("ethernet", synth.ip_packet(seg))
    pad = (-len(packet)) % 4
    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
    idb = struct.pack("<IIHHI", 1, 20, 1, 0, 65535) + struct.pack("<I", 20)
    epb_len = 32 + len(packet) + pad
    with open(path, "wb") as fh:
        fh.write(shb)
        for i in range(interfaces):
            fh.write(idb)
            fh.write(
                struct.pack("<IIIIIII", 6, epb_len, i, 0, i, len(packet), len(packet))
                + packet
                + b"\0" * pad
                + struct.pack("<I", epb_len)
            )
    code = (
        "from diagnose.probes.capture.analysis import analyse\n"
        f"a = analyse([{str(path)!r}], jobs=1)\n"
        "print(f'{sum(r.frames for r in a.reads)} frames')\n" + PEAK
    )
    size = path.stat().st_size / 1e6
    report(f"pcapng, {interfaces:,} interface blocks ({size:.1f} MB), C accelerator", *measure(code))
    report(
        f"pcapng, {interfaces:,} interface blocks ({size:.1f} MB), pure Python",
        *measure(code, {"DIAGNOSE_PURE_PYTHON": "1"}),
    )


def bundle_case(folder: Path, facts: int) -> None:
    at = min(facts, bounds.MAX_BUNDLE_FACTS)
    for n, label in ((facts, "over the bound"), (at, "at the bound"), (at // 4, "a quarter of the bound")):
        path = folder / f"bundle-{n}.json"
        with open(path, "w") as fh:
            fh.write('{"format": "diagnose-evidence", "format_version": 1, "facts": [')
            for i in range(n):
                fh.write(
                    ("," if i else "")
                    + json.dumps(
                        {
                            "kind": "dns.resolution",
                            "subject": f"n{i}.example.com",
                            "attrs": {
                                "name": f"n{i}.example.com",
                                "source": "dns",
                                "outcome": "ok",
                                "addresses": ["10.0.0.10"],
                            },
                            "provenance": {"probe": "dns"},
                        }
                    )
                )
            fh.write("]}")
        code = (
            "from diagnose.errors import InputError\nfrom diagnose.facts import load_bundle\n"
            "from diagnose.kinds import fact_kinds\n"
            f"try:\n    b = load_bundle({str(path)!r}); fact_kinds().check(b.facts, 'bundle')\n"
            "    print(f'{len(b.facts)} facts loaded and checked')\n"
            "except InputError as e:\n    print('refused:', str(e)[-90:])\n" + PEAK
        )
        size = path.stat().st_size / 1e6
        report(f"bundle of {n:,} facts ({size:.0f} MB), {label}", *measure(code))
        path.unlink()


def bomb_case(folder: Path, bomb_mb: int, line_mb: int) -> None:
    path = folder / "ISALOG_20240304_FWS_000.w3c.gz"
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (1 << 20)
    with open(path, "wb") as fh:
        fh.write(z.compress((FW + ROW.format(s=1)).encode()))
        for _ in range(bomb_mb):
            fh.write(z.compress(zeros))
        fh.write(z.compress(("\n" + ROW.format(s=2)).encode()))
        fh.write(z.flush())
    size = path.stat().st_size / 1e6
    report(f"gzip'd log: {bomb_mb:,} MB of zeros in one line ({size:.1f} MB compressed)", *measure(logs_code(path)))
    path.unlink()
    path = folder / "ISALOG_20240304_FWS_001.w3c"
    with open(path, "wb") as fh:
        fh.write((FW + ROW.format(s=1)).encode())
        chunk = b"x" * (1 << 20)
        for _ in range(line_mb):
            fh.write(chunk)
        fh.write(("\n" + ROW.format(s=2)).encode())
    report(f"plain log with one {line_mb:,} MB line", *measure(logs_code(path)))
    path.unlink()


def gzip_capture_case(folder: Path) -> None:
    path = folder / "conversations.pcap"
    synth.write_file(path, "pcap", synth.records_for(synth.conversations(20000, seed=3)))
    gz = folder / "conversations.pcap.gz"
    with open(path, "rb") as src, gzip.open(gz, "wb", compresslevel=1) as dst:
        dst.write(src.read())
    raw_mb = path.stat().st_size / 1e6
    path.unlink()
    tmp = folder / "tmp"
    tmp.mkdir()
    code = (
        "import threading, os\nfrom diagnose.probes.capture.analysis import analyse\n"
        "high = [0]\nstop = threading.Event()\n"
        "def watch():\n    while not stop.is_set():\n"
        f"        high[0] = max(high[0], sum(f.stat().st_size for f in __import__('pathlib').Path({str(tmp)!r})"
        ".rglob('*') if f.is_file()))\n        stop.wait(0.01)\n"
        "t = threading.Thread(target=watch); t.start()\n"
        f"a = analyse([{str(gz)!r}], jobs=2, method='fork')\nstop.set(); t.join()\n"
        "print(f'{sum(r.frames for r in a.reads)} frames; temporary files at most {high[0] / 1e6:.0f} MB')\n" + PEAK
    )
    report(f"gzip'd capture ({raw_mb:.0f} MB inside), two workers", *measure(code, {"TMPDIR": str(tmp)}))


def report(label: str, seconds: float, peak: float, what: str) -> None:
    print(f"{label:<68} {seconds:7.2f} s  peak {peak:7.0f} MB  {what}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4000)
    parser.add_argument("--interfaces", type=int, default=100_000)
    parser.add_argument("--facts", type=int, default=1_000_000)
    parser.add_argument("--bomb-mb", type=int, default=4096)
    parser.add_argument("--line-mb", type=int, default=512)
    parser.add_argument("--only", nargs="*", choices=["zip", "pcapng", "bundle", "bomb", "gzcapture"])
    args = parser.parse_args()
    wanted = set(args.only or ["zip", "pcapng", "bundle", "bomb", "gzcapture"])
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
        f"bounds: line {bounds.MAX_LINE_BYTES:,} B, inflate {bounds.MAX_INFLATE_RATIO}x "
        f"(slack {bounds.INFLATE_SLACK:,} B), bundle {bounds.MAX_BUNDLE_FACTS:,} facts"
    )
    with tempfile.TemporaryDirectory(prefix="bench-readers-") as tmp:
        folder = Path(tmp)
        if "zip" in wanted:
            zip_case(folder, args.members)
        if "pcapng" in wanted:
            pcapng_case(folder, args.interfaces)
        if "bundle" in wanted:
            bundle_case(folder, args.facts)
        if "bomb" in wanted:
            bomb_case(folder, args.bomb_mb, args.line_mb)
        if "gzcapture" in wanted:
            gzip_capture_case(folder)


if __name__ == "__main__":
    main()
