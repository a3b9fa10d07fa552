"""Big plain logs read in byte ranges by worker processes, merged into the result one reading gives.

A plain file (not .gz, not in a .zip) larger than SPLIT_AT is cut at line ends into ranges of about
SPLIT_AT bytes, each read by a worker into its own summary (line numbers from 1). The parent merges
them in file order, shifting each range's line numbers by the line ends before it. A range starts
with what the reader would carry into it: the #Fields in force (IIS, HttpProxy) or the record format
last seen (HAProxy HTTP or TCP); it is given the file's first one, and read again here with the right
one when the range before it ended with another. A range whose figures overflowed a bound cannot be
merged exactly (a range keeps more distinct values than a summary lists, tally.PART_VALUES, so this
is rare): then the whole file is read again here, as is a file a worker could not read.

Workers are started as diagnose/probes/workers.py says: by fork only from a single-threaded process
(the probe may run beside others in threads, and a forked copy of a lock another thread held would
never be released); else from the forkserver, or by spawn.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import signal
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Tuple, Union

from diagnose.bounds import DeadlineExceeded
from diagnose.probes.inputs import LogInput
from diagnose.probes.proxylogs.tally import Summary, messages_note

SPLIT_AT = 32 << 20  # plain files larger than this are read in byte ranges of about this size
State = Union[Tuple[str, ...], str, None]


@dataclass(frozen=True)
class Part:
    """Bytes [start, end) of a plain log in format `format`; `state` the reader's state at `start`."""

    log: LogInput
    format: str
    start: int
    end: int
    index: int
    state: State = None
    deadline: float | None = None  # time.monotonic(): a range still being read then stops, not merged


Outcome = Tuple[Summary, int, State]


class _Range:
    """At most `size` bytes of `stream`, from where it stands."""

    def __init__(self, stream: IO[bytes], size: int, deadline: float | None = None) -> None:
        self.stream = stream
        self.left = size
        self.deadline = deadline

    def read(self, n: int = -1) -> bytes:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineExceeded("stopped at the deadline", "")
        n = self.left if n < 0 else min(n, self.left)
        data = self.stream.read(n) if n else b""
        self.left -= len(data)
        return data


def read_part(part: Part) -> Outcome | None:
    """Read one byte range (in a worker); None when it could not be read (the file is then read whole)."""
    from diagnose.probes import proxylogs

    summary = Summary(part=True)
    name = part.log.name
    ends: list[int] = []
    try:
        with open(part.log.path, "rb") as fh:
            fh.seek(part.start)
            stream = _Range(fh, part.end - part.start, part.deadline)
            head = b""
            if part.index == 0:
                head = stream.read(proxylogs.HEAD)
                if head.startswith(b"\xef\xbb\xbf"):
                    head = head[3:]
                summary.files.append(name)
                summary.formats[part.format] += 1
            reader = proxylogs.reader(part.format, summary, name)
            if part.index:
                reader.resume(part.state)  # type: ignore[arg-type]
            reader.read(proxylogs.line_blocks(stream, head, proxylogs.too_long(summary, name), ends), part=True)
    except (OSError, DeadlineExceeded):
        return None
    if summary.capped() or not ends:
        return None
    return summary, ends[0], reader.state


def plan(log: LogInput, jobs: int) -> list[Part]:
    """The byte ranges of `log` to read in workers; [] when it is read whole (small, compressed, a zip
    member, not a proxy log, one job)."""
    from diagnose.probes import proxylogs

    if jobs < 2 or log.member is not None:
        return []
    try:
        size = os.path.getsize(log.path)
        if size <= SPLIT_AT or not log.plain():
            return []
        with open(log.path, "rb") as fh:
            head = fh.read(proxylogs.HEAD)
            found = proxylogs.detect(head[3:] if head.startswith(b"\xef\xbb\xbf") else head, log.name)
            bounds = [0]
            while bounds[-1] + SPLIT_AT < size:
                fh.seek(bounds[-1] + SPLIT_AT)
                tail = fh.read(1 << 20)
                cut = tail.find(b"\n")
                if cut < 0 or bounds[-1] + SPLIT_AT + cut + 1 >= size:
                    break
                bounds.append(bounds[-1] + SPLIT_AT + cut + 1)
            bounds.append(size)
    except (OSError, proxylogs.NotAProxyLogError):
        return []
    if len(bounds) < 3:
        return []
    guess = _first_state(found, head)
    return [Part(log, found, bounds[k], bounds[k + 1], k, guess if k else None) for k in range(len(bounds) - 1)]


def _first_state(found: str, head: bytes) -> State:
    """What a range is likely to start with: the file's first #Fields, or the format found."""
    from diagnose.probes import proxylogs

    probe = proxylogs.reader(found, Summary(), "")
    if isinstance(probe.state, str):
        return probe.state
    for raw in head.split(b"\n"):
        line = raw.rstrip(b"\r")
        if line[:8].lower() == b"#fields:":
            probe.read([proxylogs.lines.Block(line + b"\n", 1, True)])
            return probe.state
    return None


class Workers:
    """Reads the big plain logs of a run in byte ranges, in worker processes started at once."""

    def __init__(self, logs: Sequence[LogInput], jobs: int, deadline: float | None = None) -> None:
        self.deadline = deadline
        self.parts = {
            id(log): [dataclasses.replace(part, deadline=deadline) for part in plan(log, jobs)] for log in logs
        }
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.futures: dict[int, list[Future[Outcome | None]]] = {}
        self.again: list[Part] = []  # ranges read again here, with the state the range before ended in
        if any(self.parts.values()):
            from diagnose.probes.workers import mp_context  # (multiprocessing only where workers start)

            self.pool = concurrent.futures.ProcessPoolExecutor(  # no fork beside other threads (probes/workers.py)
                max_workers=jobs, mp_context=mp_context(), initializer=_ignore_interrupts
            )
            for key, parts in self.parts.items():
                self.futures[key] = [self.pool.submit(read_part, part) for part in parts]

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.pool is not None:
            for futures in self.futures.values():  # shutdown(cancel_futures=) is not in Python 3.8
                for future in futures:
                    future.cancel()
            self.pool.shutdown(wait=True)

    def merge(self, log: LogInput, summary: Summary) -> bool:
        """Merge the ranges of `log` into `summary`; False when the file is to be read whole instead."""
        parts = self.parts.get(id(log)) or []
        if not parts:
            return False
        outcomes: list[Outcome] = []
        state: State = None
        for part, future in zip(parts, self.futures[id(log)]):
            try:
                outcome = future.result()
            except concurrent.futures.process.BrokenProcessPool:
                outcome = None
            if outcome is not None and part.index and part.state != state:
                self.again.append(dataclasses.replace(part, state=state))  # the range before changed it
                outcome = read_part(self.again[-1])
            if outcome is None and self._late():
                break  # the ranges before are merged; the file is not read to its end
            if outcome is None:
                return False
            outcomes.append(outcome)
            state = outcome[2]
        base = 0
        for part_summary, lines, _ in outcomes:
            summary.merge(part_summary, base)
            base += lines
        for (source, product), count in _messages(outcomes).items():
            if count:
                summary.note(source, 0, messages_note(count, product))
        if len(outcomes) < len(parts):
            if not outcomes:
                summary.files.append(log.name)
            summary.unreadable += 1
            summary.note(
                log.name,
                0,
                f"stopped at the deadline: {len(parts) - len(outcomes)} of {len(parts)} byte ranges not read",
            )
        return True

    def _late(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


def _messages(outcomes: Sequence[Outcome]) -> dict[tuple[str, str], int]:
    total: dict[tuple[str, str], int] = {}
    for part_summary, _, _ in outcomes:
        for where, count in part_summary.messages.items():
            total[where] = total.get(where, 0) + count
    return total


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


__all__ = ["SPLIT_AT", "Part", "Workers", "plan", "read_part"]
