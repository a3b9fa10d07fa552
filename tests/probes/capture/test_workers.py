"""Worker processes of the readers: never forked from a threaded process (a forked child waited forever
on an import lock another thread held), and gzip'd captures decompressed once for every worker,
bounded, keeping what was read when the stream is damaged."""

from __future__ import annotations

import gzip
import os
import struct
import threading
import time
import zlib
from pathlib import Path

import pytest

from diagnose.collect import RunInputs, collect, default_check_dirs, load_checks
from diagnose.facts import ProbeStatus
from diagnose.probes import ProbeContext
from diagnose.probes import capture as capture_probe
from diagnose.probes.capture import formats
from diagnose.probes.capture.analysis import SPLIT_MIN_BYTES, analyse
from diagnose.profile import SiteProfile
from tests.probes.capture import synth
from tests.probes.logs.test_scan import FW_FIELDS, fw_row, w3c
from tests.test_bounds import peak_mb

# every fork of this process, with the number of Python threads alive at that moment
FORKS: list[int] = []
_WATCHING = threading.Event()


def _before_fork() -> None:
    if _WATCHING.is_set():
        FORKS.append(threading.active_count())


os.register_at_fork(before=_before_fork)


def _segments(n: int = 60) -> list[synth.Segment]:
    return list(synth.conversations(n, seed=11))


def _big_capture(path: Path) -> Path:
    """A pcap of real connections, padded past SPLIT_MIN_BYTES (the size at which the capture probe
    starts workers) by one non-TCP frame of zeros kept sparse on disk."""
    synth.write_file(path, "pcap", synth.records_for(_segments()))
    size = SPLIT_MIN_BYTES + 1024
    with open(path, "ab") as fh:
        fh.write(struct.pack("<IIII", 1_700_000_100, 0, size, size))
        fh.truncate(fh.tell() + size)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> RunInputs:
    folder = tmp_path_factory.mktemp("mixed")
    logs = []
    for i in range(2):  # two files: two units, read by a pool of two workers
        log = folder / f"ISALOG_20240304_FWS_00{i}.w3c"
        log.write_text(w3c(FW_FIELDS, [fw_row(time=f"10:00:{s:02d}") for s in range(20)]))
        logs.append(str(log))
    capture = _big_capture(folder / "big.pcap")
    return RunInputs(log_paths=logs, capture_paths=[str(capture)], offline=True)


def _run(inputs: RunInputs) -> dict[str, ProbeStatus]:
    checks = [c for c in load_checks(default_check_dirs()) if c.probe in ("logs", "capture")]
    bundle = collect(checks, SiteProfile(), inputs, timeout=120)
    return {run.check or run.probe: run.status for run in bundle.probes}


def test_collect_forks_no_worker_while_probe_threads_run(inputs: RunInputs) -> None:
    FORKS.clear()
    _WATCHING.set()
    try:
        statuses = _run(inputs)
    finally:
        _WATCHING.clear()
    assert set(statuses.values()) == {ProbeStatus.COMPLETE}, statuses
    assert [n for n in FORKS if n > 1] == []  # forked with other threads alive: the child may hang


def test_a_hundred_mixed_runs_end(inputs: RunInputs) -> None:
    # the hang was about one run in twenty; each run here starts a capture worker and two log
    # workers beside each other, from probe threads (a hang fails by the watchdog's timeout)
    done = threading.Event()
    failures: list[str] = []

    def runs() -> None:
        try:
            for _ in range(100):
                statuses = _run(inputs)
                if set(statuses.values()) != {ProbeStatus.COMPLETE}:
                    failures.append(str(statuses))
        finally:
            done.set()

    worker = threading.Thread(target=runs, daemon=True)
    worker.start()
    assert done.wait(600), "a mixed run hung"
    assert failures == []


def test_spawn_is_still_available_and_gives_the_same_facts(tmp_path: Path) -> None:
    path = synth.write_file(tmp_path / "c.pcap", "pcap", synth.records_for(_segments()))
    one = analyse([path], jobs=1)
    two = analyse([path], jobs=2, method="spawn")
    assert one.counts == two.counts and one.tcp_packets == two.tcp_packets


# -- gzip'd captures ---------------------------------------------------------------------------------------
def _gz_capture(tmp_path: Path) -> tuple[Path, int]:
    plain = synth.write_file(tmp_path / "c.pcap", "pcap", synth.records_for(_segments()))
    frames = analyse([plain], jobs=1).reads[0].frames
    packed = tmp_path / "c.pcap.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    return packed, frames


def test_a_gzipped_capture_is_decompressed_once_for_every_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packed, frames = _gz_capture(tmp_path)
    calls = tmp_path / "gunzip-calls"
    real = formats._gunzip

    def counted(*args: object, **kwargs: object) -> None:  # the real decompression, counted across processes
        with open(calls, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(formats, "_gunzip", counted)
    result = analyse([packed], jobs=2, method="fork")
    assert result.reads[0].frames == frames and result.reads[0].compressed
    assert len(calls.read_text().split()) == 1  # was: once in every worker (one copy per core on disk)


def test_a_damaged_gzip_trailer_keeps_every_frame_and_marks_the_read_partial(tmp_path: Path) -> None:
    packed, frames = _gz_capture(tmp_path)
    data = bytearray(packed.read_bytes())
    data[-8] ^= 0xFF  # the CRC-32 of the member
    packed.write_bytes(bytes(data))
    for jobs in (1, 2):
        read = analyse([packed], jobs=jobs).reads[0]
        assert read.frames == frames
        assert read.partial and "gzip stream damaged" in read.reason


def test_a_damaged_deflate_stream_with_logs_to_match_is_partial_not_a_traceback(tmp_path: Path) -> None:
    packed, _ = _gz_capture(tmp_path)
    data = bytearray(packed.read_bytes())
    for at in range(len(data) // 2, len(data) // 2 + 64):
        data[at] ^= 0x5A
    packed.write_bytes(bytes(data))
    log = tmp_path / "ISALOG_20240304_FWS_000.w3c"
    log.write_text(w3c(FW_FIELDS, [fw_row(time="10:00:01")]))
    result = capture_probe.probe(ProbeContext(), {"paths": [str(packed)], "log_paths": [str(log)], "jobs": 2})
    assert result.status is ProbeStatus.PARTIAL
    assert "gzip stream damaged" in result.reason


def test_a_gzip_bomb_given_as_a_capture_is_decompressed_in_bounded_pieces(tmp_path: Path) -> None:
    # 1 MiB of compressed zeros came out of zlib in one piece of about a gigabyte
    path = tmp_path / "zeros.pcap.gz"
    head = synth.pcap_header(1)
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as fh:
        fh.write(z.compress(head + struct.pack("<IIII", 1_700_000_000, 0, 1 << 30, 1 << 30)))
        zeros = bytes(1 << 20)
        for _ in range(600):
            fh.write(z.compress(zeros))
        fh.write(z.flush())
    code = (
        "from diagnose.probes.capture.analysis import analyse\n"
        f"r = analyse([{str(path)!r}], jobs=1).reads[0]\nprint(r.partial, r.reason)"
    )
    peak, out = peak_mb(code)
    assert out.startswith("True gzip stream decompresses to more than")
    assert peak < 150, f"peak RSS {peak} MB"


# -- scale edges -----------------------------------------------------------------------------------------
@pytest.mark.skipif(formats._fastcap is None, reason="C accelerator not built")
def test_the_pcapng_accelerator_converts_only_the_interfaces_its_packets_use() -> None:
    # it converted every interface declared so far on each call, and Python calls it after each
    # interface block: quadratic in interface blocks (100,000 of them took over 60 s)
    segs = _segments(3)[:5]
    blocks = b""
    for seg in segs:
        packet = synth.frame("ethernet", synth.ip_packet(seg))
        pad = (-len(packet)) % 4
        length = 32 + len(packet) + pad
        blocks += (
            struct.pack("<IIIIIII", 6, length, 1, 0, int(seg.ts * 1e6) & 0xFFFFFFFF, len(packet), len(packet))
            + packet
            + bytes(pad)
            + struct.pack("<I", length)
        )
    tracker = formats.Tracker(lambda c: None)
    handlers = formats._handlers(tracker, formats._feeder(blocks, tracker), formats._Releaser(blocks))
    unused = ("not", "an interface")  # declared earlier, used by no packet here
    off, frames, tcp = formats._fastcap.pcapng(blocks, 0, 0, False, [unused, (1, 1e-6, 0)], handlers)
    assert (off, frames, tcp) == (len(blocks), len(segs), len(segs))


# -- deadlines ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("jobs", [1, 2])
def test_the_capture_reader_stops_at_the_deadline(tmp_path: Path, jobs: int) -> None:
    from diagnose.bounds import DeadlineExceeded
    from diagnose.probes.capture.tcp import SWEEP_EVERY

    path = synth.write_file(tmp_path / "many.pcap", "pcap", synth.records_for(synth.conversations(3000, seed=5)))
    assert analyse([path], jobs=1).reads[0].frames > SWEEP_EVERY
    with pytest.raises(DeadlineExceeded, match=r"many.pcap: reading stopped at the deadline after frame 16,38\d"):
        analyse([path], jobs=jobs, deadline=time.monotonic() - 1)
    ctx = ProbeContext(deadline=time.monotonic() - 1)
    result = capture_probe.probe(ctx, {"paths": [str(path)], "jobs": jobs})
    assert result.status is ProbeStatus.UNAVAILABLE and "stopped at the deadline" in result.reason
