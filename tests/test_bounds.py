"""Bounded readers (diagnose/bounds.py): long lines, decompression bombs, FIFOs and devices, deadlines,
zip archives of many members, bundles over the bound. Memory is checked as the peak resident set of
a fresh process reading the input, never by timing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import pytest

from diagnose import bounds
from diagnose.errors import InputError
from diagnose.facts import load_bundle
from diagnose.probes.dns.hosts import read_hosts
from diagnose.probes.dns.recorded import read_recorded
from diagnose.probes.evidence import read_recorded_facts
from diagnose.probes.logs import LogInput, Unit, run_unit, summarise
from diagnose.probes.logs.scan import Site, line_blocks, stream_line_blocks
from tests.conftest import REPO, run_cli
from tests.probes.logs.test_scan import FW_FIELDS, fw_row, w3c

LONG = bounds.MAX_LINE_BYTES + 1000


def _log_with_long_line(long: bytes) -> bytes:
    text = w3c(FW_FIELDS, [fw_row(time="10:00:01"), "@@LONG@@", fw_row(time="10:00:02")])
    return text.encode().replace(b"@@LONG@@", long)


PEAK = """
def _peak():
    try:  # the high-water mark of this program's own memory (ru_maxrss keeps the parent's across exec)
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) // 1024
    except OSError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(_peak())
"""


def peak_mb(code: str, timeout: float = 300) -> tuple[float, str]:
    """Peak resident memory (MB) of a fresh interpreter running `code`, and what it printed."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", code + "\n" + PEAK], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    *out, peak = proc.stdout.strip().splitlines()
    return float(peak), "\n".join(out)


def _summary_code(path: Path) -> str:
    return (
        "from diagnose.probes.logs import summarise\nfrom diagnose.probes.logs.scan import Site\n"
        f"s, problems = summarise([{str(path)!r}], Site(), 1)\n"
        "print(s.records, s.bad_lines, s.unreadable)\nprint(problems)"
    )


# -- long lines ------------------------------------------------------------------------------------
def test_a_line_over_the_bound_is_a_bad_line_cited_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "ISALOG_20240304_FWS_000.w3c"
    path.write_bytes(_log_with_long_line(b"x" * LONG))
    summary, problems = summarise([str(path)], Site(), 1)
    assert summary.records == 2 and summary.bad_lines == 1
    assert any(p.startswith(f"{path}:6: line longer than {bounds.MAX_LINE_BYTES:,} bytes") for p in problems)


@pytest.mark.parametrize("wrapper", ["gzip", "zip"])
def test_a_long_line_in_a_gzip_or_zip_member_is_skipped_the_same_way(tmp_path: Path, wrapper: str) -> None:
    data = _log_with_long_line(b"y" * LONG)
    if wrapper == "gzip":
        path = tmp_path / "ISALOG_20240304_FWS_000.w3c.gz"
        path.write_bytes(_gzip(data))
        where = f"{path}:6"
    else:
        path = tmp_path / "logs.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("ISALOG_20240304_FWS_000.w3c", data)
        where = f"{path}!ISALOG_20240304_FWS_000.w3c:6"
    summary, problems = summarise([str(path)], Site(), 1)
    assert summary.records == 2 and summary.bad_lines == 1
    assert any(p.startswith(f"{where}: line longer than") for p in problems)


def _gzip(data: bytes) -> bytes:
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    return z.compress(data) + z.flush()


@pytest.mark.parametrize("chunk", [1000, 1 << 17, 3 << 20])
def test_line_splitters_keep_line_numbers_across_a_skipped_line(chunk: int) -> None:
    import io

    lines = [b"a" * 10, b"b" * (bounds.MAX_LINE_BYTES + 5), b"c" * 20, b"d" * bounds.MAX_LINE_BYTES, b"e"]
    data = b"\n".join(lines) + b"\n"
    for split in ("blocks", "stream"):
        told: list[int] = []
        if split == "blocks":
            blocks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
            out = b"".join(b for b, _ in line_blocks(blocks, told.append))
        else:
            out = b"".join(b for b, _ in stream_line_blocks(io.BytesIO(data), b"", None, told.append))
        assert told == [2]
        assert out.split(b"\n") == [lines[0], b"", lines[2], lines[3], lines[4], b""]


def test_a_huge_single_line_log_is_read_in_bounded_memory(tmp_path: Path) -> None:
    # 2 GB made the reader hold 8 GB; 300 MB here would need over 600 MB without the bound
    path = tmp_path / "ISALOG_20240304_FWS_000.w3c"
    with open(path, "wb") as fh:
        head, tail = _log_with_long_line(b"@").split(b"@")
        fh.write(head)
        block = b"z" * (1 << 20)
        for _ in range(300):
            fh.write(block)
        fh.write(tail)
    peak, out = peak_mb(_summary_code(path))
    assert out.splitlines()[0] == "2 1 0"
    assert peak < 150, f"peak RSS {peak} MB"


def test_a_gzip_bomb_stops_at_the_inflate_bound_in_bounded_memory(tmp_path: Path) -> None:
    # zeros without a line end: a 46 MB .gz of them drove the reader to 23.7 GB
    path = tmp_path / "ISALOG_20240304_FWS_000.w3c.gz"
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    head, tail = _log_with_long_line(b"@").split(b"@")
    with open(path, "wb") as fh:
        fh.write(z.compress(head))
        zeros = bytes(1 << 20)
        for _ in range(400):
            fh.write(z.compress(zeros))
        fh.write(z.compress(tail) + z.flush())
    limit = bounds.inflate_limit(path.stat().st_size)
    assert limit < 400 << 20
    peak, out = peak_mb(_summary_code(path))
    records, bad, unreadable = out.splitlines()[0].split()
    assert (records, bad, unreadable) == ("1", "1", "1")  # the record before, the long line, stopped early
    assert "decompresses to more than" in out
    assert peak < 150, f"peak RSS {peak} MB"


# -- what is not a regular file ----------------------------------------------------------------------
@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "ISALOG_20240304_FWS_000.w3c"
    os.mkfifo(path)
    return path


@pytest.fixture
def zero_link(tmp_path: Path) -> Path:
    path = tmp_path / "hosts"
    path.symlink_to("/dev/zero")
    return path


def test_a_fifo_given_as_a_log_is_refused_in_one_line(fifo: Path) -> None:
    proc = run_cli("probe", "logs", str(fifo), timeout=60)  # a hang is a failure, not a stuck run
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"diagnose: error: {fifo}: refused: a FIFO (named pipe), not a regular file"
    ]


def test_a_symlink_to_dev_zero_is_refused_by_every_text_reader(zero_link: Path) -> None:
    code = (
        "import sys\nfrom diagnose.errors import InputError\n"
        "from diagnose.probes.dns.hosts import read_hosts\nfrom diagnose.probes.dns.recorded import read_recorded\n"
        "from diagnose.probes.evidence import read_recorded_facts\nfrom diagnose.facts import load_bundle\n"
        "from diagnose.probes.services.exports import read_export\n"
        "from diagnose.probes.host.exports import read_host_export\n"
        "for read in (read_hosts, read_recorded, read_recorded_facts, load_bundle, read_export, read_host_export):\n"
        "    try:\n        read(sys.argv[1])\n    except InputError as exc:\n        print(exc)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", code, str(zero_link)], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"{zero_link}: refused: a character device, not a regular file"] * 6


def test_a_fifo_given_as_a_capture_or_evidence_is_reported_not_waited_on(fifo: Path, tmp_path: Path) -> None:
    proc = run_cli("probe", "capture", str(fifo), timeout=60)
    assert "refused: a FIFO (named pipe), not a regular file" in proc.stdout + proc.stderr
    with pytest.raises(InputError, match="refused: a FIFO"):
        read_hosts(fifo)
    with pytest.raises(InputError, match="refused: a FIFO"):
        read_recorded(fifo)
    with pytest.raises(InputError, match="refused: a FIFO"):
        read_recorded_facts(fifo)


def test_a_text_input_over_the_bound_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    with open(path, "wb") as fh:
        fh.truncate(bounds.MAX_SMALL_INPUT + 1)  # sparse: no disk used
    with pytest.raises(InputError, match="larger than the"):
        read_hosts(path)


# -- deadlines -----------------------------------------------------------------------------------------
def test_a_reader_stops_at_the_deadline_and_keeps_what_it_read(tmp_path: Path) -> None:
    path = tmp_path / "ISALOG_20240304_FWS_000.w3c"
    path.write_text(w3c(FW_FIELDS, [fw_row(time=f"10:00:{s:02d}") for s in range(30)]))
    summary, _, _ = run_unit(Unit(LogInput(str(path))), Site(), deadline=time.monotonic() - 1)
    assert summary.unreadable == 1 and summary.partial
    assert any("stopped at the deadline" in message for _, _, message in summary.notes)


def test_collect_timeout_stops_the_log_reader(tmp_path: Path) -> None:
    from diagnose.collect import RunInputs, default_check_dirs, load_checks
    from diagnose.collect import collect as collect_all
    from diagnose.profile import SiteProfile

    path = tmp_path / "ISALOG_20240304_FWS_000.w3c"
    path.write_text(w3c(FW_FIELDS, [fw_row(time=f"10:00:{s:02d}") for s in range(30)]))
    checks = [c for c in load_checks(default_check_dirs()) if c.probe == "logs"]
    bundle = collect_all(checks, SiteProfile(), RunInputs(log_paths=[str(path)], offline=True), timeout=0.0)
    runs = [r for r in bundle.probes if r.probe == "logs"]
    assert runs and all(r.status.value != "complete" for r in runs)
    assert all("stopped at the deadline" in r.reason for r in runs), [r.reason for r in runs]
    assert not [f for f in bundle.facts if f.kind.startswith("log.")]


# -- zip archives and bundles ---------------------------------------------------------------------------
def test_a_zip_central_directory_is_read_once_not_once_per_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "logs.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(60):
            archive.writestr(f"ISALOG_20240304_FWS_{i:03d}.w3c", w3c(FW_FIELDS, [fw_row(time=f"10:00:{i:02d}")]))
    opened: list[str] = []
    real_init = zipfile.ZipFile.__init__

    def counting_init(self: zipfile.ZipFile, file: object, *args: object, **kwargs: object) -> None:
        opened.append(str(file))
        real_init(self, file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "__init__", counting_init)
    summary, _ = summarise([str(path)], Site(), 1)
    assert summary.records == 60 and len(summary.files) == 60
    assert opened.count(str(path)) == 1  # each member opened through the one central directory read


def test_a_bundle_of_more_facts_than_the_bound_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    fact = '{"kind":"k","subject":"s"}'
    path.write_text('{"format_version": 1, "facts": [' + ",".join([fact] * (bounds.MAX_BUNDLE_FACTS + 1)) + "]}")
    with pytest.raises(InputError) as caught:
        load_bundle(path)
    assert str(caught.value) == (
        f"{path}:$.facts: {bounds.MAX_BUNDLE_FACTS + 1:,} facts: more than the "
        f"{bounds.MAX_BUNDLE_FACTS:,} a bundle may hold (diagnose.bounds.MAX_BUNDLE_FACTS); "
        "split the evidence"
    )
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(bounds.MAX_BUNDLE_BYTES + 1)
    with pytest.raises(InputError, match="larger than the"):
        load_bundle(big)
    proc = run_cli("analyze", str(path), timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_zip_member_bomb_stops_at_the_inflate_bound(tmp_path: Path) -> None:
    path = tmp_path / "logs.zip"
    head, tail = _log_with_long_line(b"@").split(b"@")
    archive = zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED)
    with archive, archive.open("ISALOG_20240304_FWS_000.w3c", "w", force_zip64=True) as member:
        member.write(head)
        filler = b"x" * (1 << 20)  # one line, skipped once over its bound; the inflate bound stops it
        for _ in range(200):
            member.write(filler)
        member.write(tail)
    info = zipfile.ZipFile(path).infolist()[0]
    assert info.file_size > bounds.inflate_limit(info.compress_size)
    summary, problems = summarise([str(path)], Site(), 1)
    assert (summary.records, summary.bad_lines, summary.unreadable) == (1, 1, 1)
    assert any("decompresses to more than" in p and "logs.zip!ISALOG" in p for p in problems), problems


def test_a_csv_field_over_the_csv_limit_is_a_bad_line_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "FirewallLog.csv"
    header = "ClientIP,DestHost,LogTime,GmtLogTime,ResultCode,Action\n"
    row = "10.0.0.1,mail.example.com,2024-03-04 10:00:01,2024-03-04 10:00:01,64,Failed\n"
    path.write_text(header + row + "10.0.0.1," + "x" * 200_000 + ",2024-03-04,2024-03-04,64,Failed\n" + row)
    summary, problems = summarise([str(path)], Site(), 1)
    assert (summary.records, summary.bad_lines) == (2, 1)
    assert problems[0].startswith(f"{path}:3: unreadable CSV record skipped (field larger than field limit")


def test_collect_stops_waiting_for_a_probe_past_its_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from diagnose import collect as collect_module
    from diagnose.collect import RunInputs, default_check_dirs, load_checks
    from diagnose.collect import collect as collect_all
    from diagnose.profile import SiteProfile
    from tests.conftest import busy_evidence

    # recorded evidence is parsed whole (bounded by size, not by the clock): seconds of work, while
    # the run allows none; collect records it as not finished LATE seconds after the deadline
    evidence = busy_evidence(tmp_path / "many-facts.json")
    assert collect_module.LATE > 0
    monkeypatch.setattr(collect_module, "LATE", 0.05)  # the parse takes seconds on any machine; LATE s would not
    checks = [c for c in load_checks(default_check_dirs()) if c.probe == "evidence"]
    bundle = collect_all(checks, SiteProfile(), RunInputs(evidence_paths=[str(evidence)], offline=True), timeout=0.0)
    assert [(r.status.value, r.reason) for r in bundle.probes] == [
        ("interrupted", "did not finish within the time allowed (0 s)")
    ]
    assert not [f for f in bundle.facts if f.kind == "dns.resolution"]
