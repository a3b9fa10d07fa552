"""A seeded mutation fuzzer for every reader, run through the real CLI in a subprocess.

Each case is one seed input (a real-format file: a TMG log, a capture, a recorded DNS answer, a HOSTS
file, a services export, an evidence bundle, a site profile), changed by a few random mutations and
sometimes wrapped in gzip or zip (damaged or not), then read by the `diagnose` command that reads
that kind of input. A case passes when the command:

* ends within `CASE_TIMEOUT` seconds (no hang);
* exits with a code from the exit-code table (0-4), never a crash or a signal;
* prints no Python traceback on stderr or stdout;
* writes valid UTF-8 JSON on stdout when it exits 0 with `--format json`;
* peaks below `MEMORY_LIMIT_MB` of resident memory, its worker processes included (Linux reports
  the largest of the process and its waited-for descendants in `wait4`'s `ru_maxrss`).

Everything is reproducible from (seed, reader, case number): a failing case is written to a folder
with the command that reproduces it. `tests/test_fuzz.py` runs a few hundred cases in CI;
`bench/fuzz.py` runs as many as asked.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CASE_TIMEOUT = 60.0
MEMORY_LIMIT_MB = 200
EXIT_CODES = {0, 1, 2, 3, 4}
LONG_LINE = 3 * 1024 * 1024  # a line longer than any reader's line bound


# --- seeds ---------------------------------------------------------------------------------------

W3C_FW_HEADER = (
    "#Software: Microsoft Forefront Threat Management Gateway 2010\n"
    "#Version: 1.0\n"
    "#Date: 2024-03-04 10:00:00\n"
    "#Fields: computer date time IP protocol source destination original client IP source network "
    "destination network action status rule application protocol bytes sent bytes sent intermediate "
    "bytes received bytes received intermediate connection time connection time intermediate username "
    "agent session ID connection ID interface IP interface name\n"
)


def _fw_rows(rng: random.Random, n: int) -> str:
    rows = []
    for i in range(n):
        status = rng.choice(["0x80070040", "0x0", "0x80074e20", "0x8007274d", "0x80072747", "0x80070102"])
        action = "Failed Connection Attempt" if status != "0x0" else "Closed Connection"
        fields = [
            "TMG01",
            "2024-03-04",
            f"10:{i // 60 % 60:02d}:{i % 60:02d}",
            "TCP",
            f"10.1.4.98:{30000 + i}",
            "10.1.5.11:443",
            "198.51.100.7",
            "Local Host",
            "Internal",
            action,
            status,
            "Publish OWA",
            "HTTPS Server",
            "1200",
            "0",
            "800",
            "0",
            "15",
            "0",
            "-",
            "-",
            str(i),
            str(1000 + i),
            "10.1.4.98",
            "Internal",
        ]
        rows.append("\t".join(fields))
    return "\n".join(rows) + "\n"


def seed_inputs(workdir: Path, corpus: Path | None) -> dict[str, list[Path]]:
    """Real-format seed files per reader, written into `workdir` (plus the corpus where present)."""
    from tests.probes.capture import synth

    rng = random.Random(1)
    workdir.mkdir(parents=True, exist_ok=True)
    seeds: dict[str, list[Path]] = {k: [] for k in READERS}

    fw = workdir / "ISALOG_20240304_FWS_000.w3c"
    fw.write_text(W3C_FW_HEADER + _fw_rows(rng, 120), newline="\r\n")
    csv = workdir / "FirewallLog.csv"
    csv.write_text(
        "servername,logTime,protocol,SourceIP,SourcePort,DestinationIP,DestinationPort,OriginalClientIP,"
        "SourceNetwork,DestinationNetwork,Action,resultcode,rule,ApplicationProtocol,GmtLogTime\n"
        + "".join(
            f"TMG01,2024-03-04 11:00:{i:02d}.000,TCP,0A000001-FFFF-0000-0000-000000000000,{50000 + i},"
            "0A000014-FFFF-0000-0000-000000000000,443,C6336407-FFFF-0000-0000-000000000000,Local Host,Internal,10,"
            f'-2147024832,"Publish OWA, Exchange",HTTPS Server,2024-03-04 10:00:{i:02d}.000\n'
            for i in range(40)
        )
    )
    seeds["logs"] += [fw, csv, REPO / "examples/seed/ISALOG_20110504_FWS_000.w3c"]

    segments = list(synth.conversations(60, seed=3))
    for fmt, name in (("pcap", "trace.pcap"), ("pcapng", "trace.pcapng"), ("netmon2.1", "trace.cap")):
        seeds["capture"].append(synth.write_file(workdir / name, fmt, synth.records_for(segments)))
    seeds["capture"].append(REPO / "examples/seed/netmon-trace.txt")

    seeds["dns"] += [*sorted((REPO / "tests/data/dns").glob("*.txt")), REPO / "examples/dns-mismatch/dig.txt"]
    seeds["hosts"].append(REPO / "examples/dns-mismatch/hosts")
    seeds["services"] += sorted(p for p in (REPO / "tests/data/services").iterdir() if p.suffix != ".md")
    seeds["services"].append(REPO / "examples/fba-stopped/cas01-services.csv")
    seeds["bundle"] += [REPO / f"examples/{name}/evidence.json" for name in ("dns-mismatch", "fba-stopped")]
    seeds["evidence"] += seeds["bundle"]
    seeds["profile"] += [REPO / f"examples/{name}/profile.yaml" for name in ("seed", "dns-mismatch", "fba-stopped")]

    if corpus is not None and corpus.is_dir():
        seeds["logs"] += sorted((corpus / "tmg-logs").glob("*"))
        seeds["capture"] += sorted(p for p in (corpus / "pcaps").glob("*.pcap*") if p.stat().st_size < 2_000_000)
    return seeds


# --- the command that reads each kind of input ------------------------------------------------------


def _args(reader: str, path: Path, out: Path) -> list[str]:
    p = str(path)
    return {
        "logs": ["probe", "logs", p, "--format", "json"],
        "capture": ["probe", "capture", p, "--format", "json", "--jobs", "2"],
        "dns": ["probe", "dns", "mail.contoso.com", "--offline", "--no-hosts", "--dns-recorded", p, "--format", "json"],
        "hosts": ["probe", "dns", "mail.contoso.com", "--offline", "--hosts-file", p, "--format", "json"],
        "services": ["probe", "services", "--services-export", p, "--format", "json"],
        "bundle": ["analyze", p, "--format", "json", "--no-input"],
        "evidence": ["collect", "--evidence", p, "--offline", "--no-input", "--quiet", "-o", str(out)],
        "profile": ["collect", "--profile", p, "--offline", "--no-input", "--quiet", "--timeout", "10", "-o", str(out)],
    }[reader]


READERS = ("logs", "capture", "dns", "hosts", "services", "bundle", "evidence", "profile")
JSON_OUT = {"logs", "capture", "dns", "hosts", "services", "bundle"}


# --- mutations ---------------------------------------------------------------------------------------


def _flip(data: bytearray, rng: random.Random) -> None:
    for _ in range(rng.randint(1, 16)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)


def _truncate(data: bytearray, rng: random.Random) -> None:
    if data:
        del data[rng.randrange(len(data)) :]


def _delete(data: bytearray, rng: random.Random) -> None:
    if data:
        a = rng.randrange(len(data))
        del data[a : a + rng.randint(1, 4096)]


def _duplicate(data: bytearray, rng: random.Random) -> None:
    if data:
        a = rng.randrange(len(data))
        chunk = data[a : a + rng.randint(1, 4096)]
        at = rng.randrange(len(data))
        data[at:at] = chunk * rng.randint(1, 50)


def _insert_hostile(data: bytearray, rng: random.Random) -> None:
    pieces = [
        b"\x00",
        b"\r",
        b"\x1b]0;pwned\x07",
        b"\x1b[2J",
        b"\xff\xfe",
        b"\xed\xa0\x80",
        b"<script>",
        b"\t" * 300,
        b"\n#Fields: x\n",
        b"%s%n",
        b"\xe2\x80\xae",
        b"9" * 400,
        b"-1",
        b"NaN",
        b"1e999",
    ]
    for _ in range(rng.randint(1, 6)):
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.choice(pieces)


def _long_line(data: bytearray, rng: random.Random) -> None:
    at = rng.randrange(len(data) + 1)
    data[at:at] = bytes([rng.choice(b"A\t,0")]) * LONG_LINE


def _numbers(data: bytearray, rng: random.Random) -> None:
    text = bytes(data)
    big = rng.choice([b"99999999999999999999999", b"-1", b"0", b"4294967296", b"18446744073709551617"])
    data[:] = re.sub(rb"\d+", lambda m: big if rng.random() < 0.2 else m.group(0), text)


def _splice(data: bytearray, rng: random.Random) -> None:
    if len(data) > 2:
        a, b = sorted(rng.randrange(len(data)) for _ in range(2))
        data[:] = data[b:] + data[a:b] + data[:a]


MUTATIONS: tuple[Callable[[bytearray, random.Random], None], ...] = (
    _flip,
    _flip,
    _truncate,
    _delete,
    _duplicate,
    _insert_hostile,
    _insert_hostile,
    _numbers,
    _splice,
    _long_line,
)


def _gzip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    packed = gzip.compress(data, compresslevel=1)
    damage = rng.random()
    if damage < 0.3:
        packed = packed[: -rng.randint(1, 8)]  # damaged or missing trailer
    elif damage < 0.5:
        packed = packed[: max(11, int(len(packed) * rng.random()))]  # cut mid-stream
    elif damage < 0.6:
        b = bytearray(packed)
        _flip(b, rng)
        packed = bytes(b)
    return packed, ".gz"


def _zip(data: bytes, name: str, rng: random.Random) -> tuple[bytes, str]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(rng.choice([1, 1, 2, 30])):
            zf.writestr(f"{i}-{name}", data)
    packed = buf.getvalue()
    if rng.random() < 0.3:
        packed = packed[: max(30, int(len(packed) * rng.random()))]
    return packed, ".zip"


def bomb(kind: str, head: bytes, fill: bytes = b"\0") -> bytes:
    """A small file that expands to `head` and then 256 MiB of `fill`: what a decompression bound must stop."""
    raw = io.BytesIO()
    chunk = fill * ((1 << 20) // len(fill))
    if kind == "gzip":
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9) as gz:
            gz.write(head)
            for _ in range(256):
                gz.write(chunk)
    else:
        with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("ISALOG_20240304_FWS_000.w3c", "w") as fh:
            fh.write(head)
            for _ in range(256):
                fh.write(chunk)
    return raw.getvalue()


@dataclass(frozen=True)
class Case:
    reader: str
    number: int
    seed_file: Path
    steps: tuple[str, ...]
    path: Path


def make_case(reader: str, number: int, seeds: Sequence[Path], workdir: Path, seed: int) -> Case:
    rng = random.Random(f"{seed}:{reader}:{number}")
    seed_file = rng.choice(list(seeds))
    data = bytearray(seed_file.read_bytes())
    steps: list[str] = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        mutation = rng.choice(MUTATIONS)
        mutation(data, rng)
        steps.append(mutation.__name__.lstrip("_"))
    if rng.random() < 0.15:
        data = bytearray(b"\xff\xfe" + bytes(data).decode("latin-1").encode("utf-16-le"))
        steps.append("utf16")
    payload, suffix = bytes(data), seed_file.suffix
    wrap = rng.random()
    if reader in ("logs", "capture") and wrap < 0.25:
        payload, extra = _gzip(payload, rng)
        suffix += extra
        steps.append("gzip")
    elif reader == "logs" and wrap < 0.35:
        payload, suffix = _zip(payload, seed_file.name, rng)
        steps.append("zip")
    path = workdir / f"{reader}-{number:04d}-{seed_file.stem}{suffix}"
    path.write_bytes(payload)
    return Case(reader, number, seed_file, tuple(steps), path)


# --- running ----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    case: Case
    command: list[str]
    exit_code: int | None
    seconds: float
    peak_mb: float
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"{self.case.reader}#{self.case.number} from {self.case.seed_file.name} via {'+'.join(self.case.steps)}: "
            f"{'; '.join(self.problems)} (exit {self.exit_code}, {self.seconds:.1f} s, {self.peak_mb:.0f} MB); "
            f"reproduce: python -m diagnose {' '.join(self.command)}"
        )


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["DIAGNOSE_NETWORK"] = "loopback"
    env["NO_COLOR"] = "1"
    return env


def run_case(case: Case, workdir: Path, timeout: float = CASE_TIMEOUT) -> Outcome:
    """Read the case's input with the command for its reader, and check the run."""
    args = _args(case.reader, case.path, workdir / f"{case.path.name}.out.json")
    return run_command(
        [sys.executable, "-m", "diagnose", *args], args, case, workdir, timeout, json_out=case.reader in JSON_OUT
    )


def run_script(script: Path, case: Case, workdir: Path, timeout: float = CASE_TIMEOUT) -> Outcome:
    """Run a Python script under the same checks (the harness's own test)."""
    return run_command([sys.executable, str(script)], [str(script)], case, workdir, timeout, json_out=False)


def run_command(
    command: list[str], args: list[str], case: Case, workdir: Path, timeout: float, json_out: bool
) -> Outcome:
    stdout_path, stderr_path = workdir / f"{case.path.name}.stdout", workdir / f"{case.path.name}.stderr"
    launcher = [
        sys.executable,
        str(Path(__file__).with_name("fuzz_launcher.py")),
        str(timeout),
        str(stdout_path),
        str(stderr_path),
        str(workdir),
        "--",
    ]
    done = subprocess.run(launcher + command, capture_output=True, text=True, env=environment(), timeout=timeout + 30)
    report = json.loads(done.stdout)
    hung, orphans, code = report["hung"], report["orphans"], report["code"]
    outcome = Outcome(case, args, code, report["seconds"], report["peak_kb"] / 1024)
    stdout, stderr = stdout_path.read_bytes(), stderr_path.read_bytes()
    if hung:
        outcome.problems.append(f"hung: killed after {timeout:.0f} s")
    elif code not in EXIT_CODES:
        outcome.problems.append(f"exit code {code} is not in the exit-code table")
    elif orphans:
        outcome.problems.append("left processes running after it exited")
    if b"Traceback (most recent call last)" in stderr or b"Traceback (most recent call last)" in stdout:
        tail = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()][-1:]
        outcome.problems.append(f"traceback: {tail[0] if tail else '?'}")
    if outcome.peak_mb > MEMORY_LIMIT_MB:
        outcome.problems.append(f"peak memory {outcome.peak_mb:.0f} MB over {MEMORY_LIMIT_MB} MB")
    if code == 0 and json_out and not hung:
        try:
            json.loads(stdout.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            outcome.problems.append(f"stdout is not valid UTF-8 JSON: {exc}")
    if not outcome.problems:
        for leftover in (stdout_path, stderr_path, workdir / f"{case.path.name}.out.json", case.path):
            if leftover.exists():
                leftover.unlink()
    return outcome


def cases(reader: str, count: int, seeds: Sequence[Path], workdir: Path, seed: int) -> Iterator[Case]:
    for number in range(count):
        yield make_case(reader, number, seeds, workdir, seed)


def bomb_cases(workdir: Path) -> Iterator[Case]:
    """Decompression bombs behind a valid start: a log header then zeros or one endless line, a pcap header
    then zeros (one endless record)."""
    from tests.probes.capture import synth

    log_head = W3C_FW_HEADER.encode() + _fw_rows(random.Random(2), 5).encode()
    pcap_head = synth.pcap_header(1)
    shapes = (
        ("logs", "gzip", log_head, b"\0", ".w3c.gz"),
        ("logs", "gzip", log_head, b"A", ".w3c.gz"),
        ("logs", "zip", log_head, b"\t", ".zip"),
        ("capture", "gzip", pcap_head, b"\0", ".pcap.gz"),
        ("capture", "gzip", pcap_head + synth.pcap_record(1.0, b"\xff" * 60), b"\xff", ".pcap.gz"),
    )
    for number, (reader, kind, head, fill, suffix) in enumerate(shapes):
        path = workdir / f"bomb-{number}-{reader}{suffix}"
        path.write_bytes(bomb(kind, head, fill))
        yield Case(reader, number, path, (f"{kind}-bomb",), path)
