"""The proxylogs probe stops at the run's deadline (`collect --timeout`, ProbeContext.deadline) like the TMG
log reader: what was read is kept, the result is partial and says so, and no file is begun after it."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from diagnose import bounds
from diagnose.probes import ProbeContext, proxylogs
from diagnose.probes.proxylogs import collect, parts


def _access_log(path: Path, records: int) -> Path:
    rows = (
        f'203.0.113.{i % 9} - - [04/Mar/2024:00:{i // 60 % 60:02d}:{i % 60:02d} +0000] "GET /owa/ HTTP/1.1" '
        f'{("200", "499", "502")[i % 3]} 12 "-" "Outlook"\n'
        for i in range(records)
    )
    path.write_text("".join(rows))
    return path


def test_a_deadline_already_passed_reads_nothing_and_says_so(tmp_path: Path) -> None:
    logs = [_access_log(tmp_path / f"access{n}.log", 50) for n in range(2)]
    ctx = ProbeContext(deadline=time.monotonic() - 1)
    result, problems = collect(ctx, {"paths": [str(p) for p in logs]})
    assert result.status.value == "unavailable"
    assert any("stopped at the deadline: 2 of 2 files not read" in p for p in problems), problems


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_deadline_passing_mid_file_keeps_what_was_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    """A clock that moves one second per look (so that the deadline passes after a few blocks, whatever
    the machine's speed): in this process, and in byte ranges read by (forked) workers."""
    log = _access_log(tmp_path / "access.log", 60_000)
    monkeypatch.setattr("diagnose.probes.proxylogs.lines.BLOCK", 8192)
    monkeypatch.setattr(parts, "SPLIT_AT", 64 << 10)
    start = time.monotonic()
    shared = multiprocessing.get_context("fork").Value("d", start)  # one clock for the forked workers too

    def tick() -> float:
        with shared.get_lock():
            shared.value += 1
            return float(shared.value)

    clock = SimpleNamespace(monotonic=tick)
    for module in (bounds, proxylogs, parts):
        monkeypatch.setattr(module, "time", clock)
    if jobs > 1:  # the workers are forked, so that they run on the same clock
        if threading.active_count() > 1:
            pytest.skip("another thread runs: no fork")
        monkeypatch.setattr("diagnose.probes.workers.mp_context", lambda: multiprocessing.get_context("fork"))
    result, problems = collect(ProbeContext(deadline=start + 60), {"paths": [str(log)], "jobs": jobs})
    # in this process the blocks before the deadline are counted; of byte ranges read by workers, those
    # before the first one not read by then (none, when the first range was not begun in time)
    assert result.status.value in (("partial",) if jobs == 1 else ("partial", "unavailable")), problems
    records = [f.get("records") for f in result.facts if f.subject == "nginx:all"]
    assert (0 < records[0] < 60_000) if records else jobs > 1
    said = "byte ranges not read" if jobs > 1 else "could not be read to its end"
    assert any("deadline" in p and said in p for p in problems), problems
