"""The Status 64 entries of TMG / ISA logs, one by one, for matching them to captured connections.

The `logs` probe only counts; matching a logged entry to the packets of its connection (what the
expert did in the original case) needs each entry's UTC time, transport and both endpoints. This is
a separate pass over the files, run only when a capture is given too. It reuses the probe's readers
(format detection, decoding, gzip/zip, folders, `--tz` for local-time formats, the same line
numbers) with a scanner that keeps the Status 64 records instead of counting.

What each format gives:
* W3C Firewall logs, syslog-relayed Firewall lines, the ISA/TMG text format, SQL `FirewallLog`
  exports and tab-separated log-viewer copies: time, transport, source and destination `ip:port`.
* Web Proxy records (any format) name the client and the published server, not the two ends of one
  TCP connection (TMG's own port toward the server is not logged): kept as unusable.
* Log-viewer copies with their TABs collapsed keep no addresses: unusable.

Entries are kept up to `limit` (200,000 by default); the rest are counted as `capped`.
"""

from __future__ import annotations

import calendar
import ipaddress
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import compress

from diagnose.bounds import READ_ERRORS
from diagnose.compat import SLOTS
from diagnose.probes.logs import LogInput, NotALogError, Unit, expand, run_unit
from diagnose.probes.logs.codes import STATUS64, result_code
from diagnose.probes.logs.layout import LogKind
from diagnose.probes.logs.legs import Site, decide_leg, split_address
from diagnose.probes.logs.scan import decoded_blocks, line_blocks
from diagnose.probes.logs.scanner import Scanner
from diagnose.probes.logs.summary import LogSummary
from diagnose.probes.logs.times import clock_seconds

MAX_ENTRIES = 200_000
NOT_TCP = frozenset({"udp", "17", "icmp", "1", "igmp", "2", "gre", "47", "esp", "50", "ah", "51", "icmpv6", "58"})

# reasons an entry cannot be matched to a connection
NO_TIME = "no date and time"
NO_ENDPOINTS = "no source or destination ip:port"
WEB_PROXY = "Web Proxy record (names the client and the server, not one connection)"
NOT_TCP_REASON = "not TCP"


@dataclass(frozen=True, **SLOTS)
class Status64Entry:
    """One Status 64 record: `time` is UTC epoch seconds (whole seconds, as TMG logs them)."""

    time: float
    protocol: str  # "tcp" (also when the log does not say)
    src_ip: str  # "" when the log gives only a port
    src_port: int
    dst_ip: str
    dst_port: int
    leg: str  # server | client | unknown, as the log probe decides it
    file: int  # index into Status64Entries.files
    line: int

    @property
    def source(self) -> str:
        return _endpoint(self.src_ip, self.src_port)

    @property
    def destination(self) -> str:
        return _endpoint(self.dst_ip, self.dst_port)


@dataclass
class Status64Entries:
    entries: list[Status64Entry] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # log names as the log probe cites them
    inputs: list[LogInput] = field(default_factory=list)
    status64: int = 0  # Status 64 records seen, usable or not
    unusable: Counter[str] = field(default_factory=Counter)  # reason -> entries
    capped: int = 0  # usable entries not kept (over the limit)
    problems: list[str] = field(default_factory=list)
    limit: int = MAX_ENTRIES
    local_without_tz: list[str] = field(default_factory=list)  # logs in TMG's local time read as UTC (no --tz)

    def cite(self, entry: Status64Entry) -> str:
        return f"{self.files[entry.file]}:{entry.line}"

    def lines(self, wanted: Sequence[Status64Entry]) -> dict[str, str]:
        """The raw text of the lines of `wanted` entries (`file:line` -> text), read again from the
        files (entries keep no text, so that 200,000 of them stay small)."""
        by_file: dict[int, set[int]] = {}
        for entry in wanted:
            by_file.setdefault(entry.file, set()).add(entry.line)
        out: dict[str, str] = {}
        for index, numbers in by_file.items():
            name = self.files[index]
            for number, text in _read_lines(self.inputs[index], numbers):
                out[f"{name}:{number}"] = text
        return out


class Status64Collector(Scanner):
    """A `Scanner` that keeps each Status 64 record's endpoints and time instead of counting."""

    def __init__(self, summary: LogSummary, site: Site, source: str, sink: Status64Entries) -> None:
        super().__init__(summary, site, source)
        self.sink = sink
        if source not in sink.files:
            sink.files.append(source)
        self.file = sink.files.index(source)
        self._s64: dict[bytes, bool] = {}
        self._ips: dict[str, str] = {}

    def _is_s64(self, status: bytes) -> bool:
        found = self._s64.get(status)
        if found is None:
            text = status.decode("utf-8", "replace")
            found = self._s64[status] = result_code(text).value == STATUS64
        return found

    def consume(self, fields: list[bytes], stride: int, lineno: Callable[[int], int]) -> None:
        layout = self.layout
        if not fields or layout is None or "status" not in layout.index:
            return
        idx = layout.index
        n = len(fields) // stride
        statuses = fields[idx["status"] :: stride]
        rows = list(compress(range(n), map(self._is_s64, statuses)))
        for i in rows:
            self._keep(fields[i * stride : i * stride + layout.width], lineno(i))

    def _keep(self, record: list[bytes], line: int) -> None:
        sink = self.sink
        sink.status64 += 1
        assert self.layout is not None
        idx = self.layout.index

        def value(name: str) -> str:
            j = idx.get(name)
            if j is None or j >= len(record):
                return ""
            text = record[j].decode("utf-8", "replace").strip()
            return "" if text == "-" else text

        kind = self.layout.kind
        web = kind is LogKind.WEB or (kind is LogKind.MIXED and not value("record_type").lower().startswith("firewall"))
        if web:
            sink.unusable[WEB_PROXY] += 1
            return
        protocol = value("protocol").lower()
        if protocol in NOT_TCP:
            sink.unusable[NOT_TCP_REASON] += 1
            return
        when = _epoch(value("date"), value("time"))
        if when is None:
            sink.unusable[NO_TIME] += 1
            return
        src_ip, src_port = self._address(value("source"), value("source_port"))
        dst_ip, dst_port = self._address(value("dest"), value("dest_port"))
        if src_port is None or dst_port is None:
            sink.unusable[NO_ENDPOINTS] += 1
            return
        if len(sink.entries) >= sink.limit:
            sink.capped += 1
            return
        leg = decide_leg(self.site, src_ip, dst_ip, value("src_net"), value("dst_net"))
        sink.entries.append(Status64Entry(float(when), "tcp", src_ip, src_port, dst_ip, dst_port, leg, self.file, line))

    def _address(self, text: str, port_text: str) -> tuple[str, int | None]:
        host, port = split_address(text)
        if not port and port_text:
            port = port_text
        try:
            number = int(port)
        except ValueError:
            return "", None
        if not 0 < number < 65536:
            return "", None
        return self._ips.setdefault(h := _ip(host), h), number


@lru_cache(maxsize=65536)
def _ip(host: str) -> str:
    """The address in its standard text form ('' when the log has a name or nothing)."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return ""


@lru_cache(maxsize=4096)
def _day(date: str) -> int | None:
    parts = date.split("-")
    if len(parts) != 3:
        return None
    try:
        year, month, mday = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    if not (1970 <= year <= 9999 and 1 <= month <= 12 and 1 <= mday <= 31):
        return None  # a date no log of TMG's can hold (and one datetime could not print)
    return calendar.timegm((year, month, mday, 0, 0, 0))


def _epoch(date: str, time: str) -> int | None:
    """UTC epoch seconds of the canonical `YYYY-MM-DD` and `HH:MM:SS` (already UTC: W3C logs are,
    and the probe's readers convert local-time formats with `--tz`)."""
    day = _day(date)
    parts = time.split(":")
    if day is None or len(parts) != 3:
        return None
    clock = clock_seconds(*parts)
    return None if clock is None else day + clock


def _endpoint(ip: str, port: int) -> str:
    host = ip or "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def status64_entries(
    paths: Sequence[str],
    site: Site,
    limit: int = MAX_ENTRIES,
    progress: Callable[[str], None] | None = None,
    deadline: float | None = None,
) -> Status64Entries:
    """Every Status 64 entry of the logs under `paths` (files, folders, globs), in file order.

    Files that are not logs are noted in `problems` (the log probe reports them as it does)."""
    sink = Status64Entries(limit=limit)
    logs, problems = expand(paths)
    sink.problems.extend(problems)

    def collector(summary: LogSummary, s: Site, source: str) -> Scanner:
        return Status64Collector(summary, s, source, sink)

    for log in logs:
        if progress is not None:
            progress(f"Status 64 entries of {log.name}")
        try:
            summary = run_unit(Unit(log), site, collector, deadline)[0]
            if summary.local_without_tz:
                sink.local_without_tz.append(log.name)
        except NotALogError as exc:
            sink.problems.append(f"{log.name}: skipped, {exc.message}")
        sink.inputs.extend([log] * (len(sink.files) - len(sink.inputs)))
    return sink


def _read_lines(log: LogInput, numbers: set[int]) -> list[tuple[int, str]]:
    """Lines `numbers` (1-based, physical lines as the readers count them) of a log."""
    out: list[tuple[int, str]] = []
    if not numbers:
        return out
    last = max(numbers)
    number = 0
    try:
        with log.open() as stream:
            # the lines as the readers count them; a line over the bound comes out empty (not held)
            for block, _last in line_blocks(decoded_blocks(stream)):
                pieces = block.split(b"\n")
                if block.endswith(b"\n"):
                    pieces.pop()
                for piece in pieces:
                    number += 1
                    if number in numbers:
                        out.append((number, piece.decode("utf-8", "replace").rstrip("\r")))
                if number >= last:
                    return out
    except READ_ERRORS:
        pass
    return out
