"""Logs whose layout a `#Fields:` header gives: IIS W3C (space separated) and Exchange HttpProxy (CSV).

The header may change anywhere in a file (IIS writes it again after every restart; a changed field
selection takes effect there): each record is read with the header in force above it. A block of
whole lines that are all records of the current layout is split in one go: every line end is made a
field of its own, so one `bytes.split` gives a flat list in which record i is
fields[i*stride : i*stride+width], and each column is a slice. Other blocks (a header, a bad line, a
quoted CSV field) are read line by line, feeding the same counting.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat

from diagnose.probes.proxylogs.lines import CONTROL as _CONTROL
from diagnose.probes.proxylogs.lines import Block
from diagnose.probes.proxylogs.tally import Classify, Key, Summary, Tally

try:  # the optional C accelerator (built by hatch_build.py); the pure-Python path is the reference
    import diagnose.probes.proxylogs._fastproxy as _fastproxy
except ImportError:  # pragma: no cover - depends on the build
    _fastproxy = None
if os.environ.get("DIAGNOSE_PURE_PYTHON"):  # for comparing the two paths (tests, bench/proxylogs.py)
    _fastproxy = None

ROLES = ("scope", "status", "sub", "code", "method", "stem", "query", "action", "ms", "date", "time")
_MARKERS = (b"rpc_in_data", b"rpc_out_data", b"activesync", b"notificationwait")


@dataclass(frozen=True)
class Dialect:
    """One product's `#Fields:` logs: its separator, which field names fill which role, how keys are classified."""

    product: str
    separator: bytes
    roles: dict[str, tuple[str, ...]]  # role -> field names (lower case), first found wins
    classify: Classify
    ms_per_unit: int = 1  # time-taken is in ms for both products

    def header(self, text: str) -> list[str]:
        sep = self.separator.decode()
        return [n.strip() for n in text.strip().split(sep) if n.strip()]


@dataclass(frozen=True)
class Layout:
    names: tuple[str, ...]
    width: int
    at: dict[str, int]  # role -> column (absent roles left out)

    @property
    def columns(self) -> tuple[int, ...]:
        """The column of each role in ROLES order, -1 when absent (for the C accelerator)."""
        return tuple(self.at.get(role, -1) for role in ROLES)

    @classmethod
    def of(cls, names: Sequence[str], dialect: Dialect) -> Layout:
        lowered = [n.lower() for n in names]
        at: dict[str, int] = {}
        for role, candidates in dialect.roles.items():
            for candidate in candidates:
                if candidate in lowered:
                    at[role] = lowered.index(candidate)
                    break
        return cls(tuple(names), len(names), at)


def long_poll(method: bytes, stem: bytes, query: bytes, action: bytes) -> str:
    """The long-lived request class of a record, or ""."""
    if method == b"RPC_IN_DATA":
        return "rpc_in_data"
    if method == b"RPC_OUT_DATA":
        return "rpc_out_data"
    low = stem.lower()
    rest = query.lower() + b" " + action.lower()
    if b"activesync" in low and (b"cmd=ping" in rest or action.lower() == b"ping"):
        return "eas_ping"
    if b"/mapi/" in low and b"notificationwait" in rest:
        return "mapi_notificationwait"
    return ""


_REQUESTS: dict[bytes, str] = {}  # request line -> its long-poll class (bounded: cleared when full)


def request_long_polls(requests: Sequence[bytes]) -> list[str]:
    """`request_long_poll` of each request line, each distinct one worked out once."""
    known = _REQUESTS
    if len(known) > 65536:
        known.clear()
    for request in set(requests).difference(known):
        known[request] = request_long_poll(request) if request else ""
    return list(map(known.__getitem__, requests))


def request_long_poll(request: bytes) -> str:
    """The long-lived request class of a logged request line (`POST /path?query HTTP/1.1`), or ""."""
    method, _, rest = request.partition(b" ")
    uri = rest.rsplit(b" ", 1)[0] if b" HTTP/" in rest else rest
    stem, _, query = uri.partition(b"?")
    return long_poll(method, stem, query, b"")


def _seconds(lp: str, ms: bytes) -> int:
    if not lp:
        return -1
    try:
        return int(ms) // 1000
    except ValueError:
        return -1


class Reader:
    """Reads one file of one dialect into a tally."""

    def __init__(self, dialect: Dialect, summary: Summary, source: str) -> None:
        self.dialect = dialect
        self.summary = summary
        self.source = source
        self.tally = Tally(summary, dialect.product, source, dialect.classify)
        self.layout: Layout | None = None
        self.first = ""
        self.last = ""

    @property
    def state(self) -> tuple[str, ...] | None:
        """The #Fields in force after the last line read."""
        return self.layout.names if self.layout is not None else None

    def resume(self, state: tuple[str, ...] | None) -> None:
        """Read on from a byte range after which the #Fields `state` are in force."""
        self.layout = Layout.of(state, self.dialect) if state is not None else None

    def read(self, blocks: Iterable[Block], part: bool = False) -> None:
        """Read every block; what was read is counted even when the blocks end in an error."""
        try:
            for block in blocks:
                if not self._fast(block):
                    self._slow(block)
        finally:
            self.tally.flush()
            self.summary.see_times(self.dialect.product, self.first, self.last)

    # -- a clean block in one go
    def _fast(self, block: Block) -> bool:
        layout, data = self.layout, block.data
        if layout is None or not data.endswith(b"\n"):
            return False
        if _fastproxy is not None and layout.width <= _fastproxy.MAX_WIDTH:
            found = _fastproxy.w3c_block(data, self.dialect.separator.decode(), layout.width, layout.columns)
            if (
                found is not None
                and (
                    "date" not in layout.at
                    or (stamp(found[2], "time" in layout.at) and stamp(found[3], "time" in layout.at))
                )
                and self.tally.absorb(found[1])
            ):
                if "date" in layout.at:
                    self._see(found[2], found[3], "time" in layout.at)
                return True
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
            if b"\r" in data:
                return False
        if len(data.translate(None, _CONTROL)) != len(data) or data.startswith(b"#") or b"\n#" in data:
            return False
        sep = self.dialect.separator
        if sep == b"," and b'"' in data:
            return False
        stride = layout.width + 1
        spread = data.replace(b"\n", sep + b"\n" + sep)
        n = (len(spread) - len(data)) >> 1
        fields = spread.split(sep)
        if len(fields) != n * stride + 1 or fields[layout.width :: stride].count(b"\n") != n:
            return False
        fields.pop()

        def text_of(i: int) -> bytes:  # only for the few records cited
            return data.split(b"\n", i + 1)[i]

        self._count(fields, stride, n, data, block.first_line.__add__, text_of)
        return True

    # -- line by line
    def _slow(self, block: Block) -> None:
        rows: list[list[bytes]] = []
        numbers: list[int] = []
        texts: list[bytes] = []
        raws = block.data.split(b"\n")
        clean = block.data.endswith(b"\n")
        if clean:
            raws.pop()
        for offset, raw in enumerate(raws):
            number = block.first_line + offset
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line.strip():
                continue
            unterminated = block.last and not clean and offset == len(raws) - 1
            if line.startswith(b"#"):
                if line[:8].lower() == b"#fields:":
                    self._flush_rows(rows, numbers, texts)
                    names = self.dialect.header(line[8:].decode("utf-8", "replace"))
                    self.layout = Layout.of(names, self.dialect)
                    if "status" not in self.layout.at:
                        self.summary.note(self.source, number, "#Fields header without a status field")
                continue
            if len(line.translate(None, _CONTROL)) != len(line):
                self.summary.bad_line(
                    self.source,
                    number,
                    "truncated last line (binary data) skipped" if unterminated else "binary garbage skipped",
                    unterminated,
                )
                continue
            if self.layout is None:
                self.summary.bad_line(self.source, number, "record before any #Fields header")
                continue
            parts = self._split(line)
            if len(parts) != self.layout.width:
                if unterminated and len(parts) < self.layout.width:
                    self.summary.bad_line(
                        self.source, number, f"truncated last line ({len(parts)} of {self.layout.width} fields)", True
                    )
                else:
                    self.summary.bad_line(
                        self.source, number, f"{len(parts)} fields where the #Fields header has {self.layout.width}"
                    )
                continue
            rows.append(parts)
            numbers.append(number)
            texts.append(line)
        self._flush_rows(rows, numbers, texts)

    def _split(self, line: bytes) -> list[bytes]:
        sep = self.dialect.separator
        if sep == b"," and b'"' in line:
            try:
                values = next(csv.reader([line.decode("utf-8", "replace")], strict=True))
            except (csv.Error, StopIteration):
                return []
            return [v.encode("utf-8") for v in values]
        return line.split(sep)

    def _flush_rows(self, rows: list[list[bytes]], numbers: list[int], texts: list[bytes]) -> None:
        if rows and self.layout is not None:
            stride = self.layout.width
            fields = [f for row in rows for f in row]
            self._count(fields, stride, len(rows), b"".join(texts), numbers.__getitem__, texts.__getitem__)
        rows.clear()
        numbers.clear()
        texts.clear()

    # -- the counting shared by both ways
    def _count(
        self,
        fields: list[bytes],
        stride: int,
        n: int,
        data: bytes,
        line_of: Callable[[int], int],
        text_of: Callable[[int], bytes],
    ) -> None:
        assert self.layout is not None
        at = self.layout.at

        def column(role: str) -> Sequence[bytes]:
            j = at.get(role, -1)
            return fields[j::stride] if j >= 0 else [b""] * n

        method, stem = column("method"), column("stem")
        low = data.lower()
        if any(marker in low for marker in _MARKERS):
            lps: Iterable[str] = list(map(long_poll, method, stem, column("query"), column("action")))
            secs: Iterable[int] = list(map(_seconds, lps, column("ms")))
        else:
            lps, secs = repeat("", n), repeat(-1, n)
        keys: list[Key] = list(zip(column("scope"), column("status"), column("sub"), column("code"), lps, secs))
        self.tally.consume(keys, line_of, text_of)
        self._times(column("date"), column("time") if "time" in at else None)

    def _times(self, dates: Sequence[bytes], times: Sequence[bytes] | None) -> None:
        """Take the earliest and latest (date, time) of the records that have one (see `stamp`)."""
        if "date" not in self.layout.at:  # type: ignore[union-attr]
            return
        timed = times is not None
        if times is None:  # one ISO date-time column
            lo, hi = (min(dates), b""), (max(dates), b"")
        elif dates.count(dates[0]) == len(dates):
            lo, hi = (dates[0], min(times)), (dates[0], max(times))
        else:
            stamps = list(zip(dates, times))
            lo, hi = min(stamps), max(stamps)
        if not self._see(lo, hi, timed):  # a record without a readable time: the others, one by one
            pairs = zip(dates, times if times is not None else repeat(b""))
            valid = [pair for pair in pairs if stamp(pair, timed)]
            if valid:
                self._see(min(valid), max(valid), timed)

    def _see(self, lo: tuple[bytes, bytes], hi: tuple[bytes, bytes], timed: bool) -> bool:
        """Take `lo` and `hi` as the earliest and latest (date, time) of a block; False when one of
        them is not a date and time (nothing taken)."""
        first, last = stamp(lo, timed), stamp(hi, timed)
        if not (first and last):
            return False
        self.first = min(self.first, first) if self.first else first
        self.last = max(self.last, last)
        return True


def stamp(pair: tuple[bytes, bytes], timed: bool) -> str:
    """A record's (date, time) (time b"" when the layout has one date-time column) as ISO UTC to the
    second, or "" when it is not one."""
    text = pair[0] + b"T" + pair[1] if timed else pair[0]
    if len(text) >= 19 and text[4:5] == b"-" and text[13:14] == b":":
        return text[:19].decode("ascii", "replace") + "Z"
    return ""
