"""Records of the formats that are not W3C (the ISA/TMG text format, log viewer and Live Logging
copies, collapsed copies, SQL-export CSV), split by their readers and converted to canonical fields
with their time in UTC, then counted by the same `Scanner`."""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from itertools import chain
from typing import TYPE_CHECKING

from diagnose.compat import ZoneInfo, zip_strict
from diagnose.probes.logs.fields import _GARBAGE, _GARBAGE_TEXT, _text
from diagnose.probes.logs.layout import (
    ACTION_STRINGS,
    CANON,
    FIXED_FIREWALL,
    FIXED_WEB,
    WEB_FILTERINFO,
    Layout,
    LogKind,
)
from diagnose.probes.logs.times import parse_datetime, to_utc

if TYPE_CHECKING:
    from diagnose.probes.logs.scanner import Scanner


def canon_layout(kind: LogKind) -> Layout:
    return Layout(kind, CANON, {name: i for i, name in enumerate(CANON)})


_DATE, _TIME = CANON.index("date"), CANON.index("time")
_ADDRESS_PORT = ((CANON.index("source"), CANON.index("source_port")), (CANON.index("dest"), CANON.index("dest_port")))
_AFTER_SECONDS = re.compile(r"(?:\.\d+)?\s*")  # what may follow `YYYY-MM-DD HH:MM:SS` without changing it


class CanonBuilder:
    """Turns a record of any layout into canonical fields, with its time in UTC."""

    def __init__(self, layout: Layout, zone: ZoneInfo | None, local: bool) -> None:
        self.layout = layout
        self.zone = zone if local else None
        self.local = local
        idx = layout.index
        self._pairs = tuple((i, idx[name]) for i, name in enumerate(CANON) if name in idx)
        self._gmt = idx.get("gmt")
        self._logtime = idx.get("logtime")
        self._date_time = (idx["date"], idx["time"]) if "date" in idx and "time" in idx else None
        self._need = max((j + 1 for _, j in self._pairs), default=0)  # columns `build_batch` reads

    def build(self, values: list[str]) -> list[bytes]:
        n = len(values)
        out: list[bytes] = [b"-"] * len(CANON)
        for i, j in self._pairs:
            if j < n:
                value = values[j].strip()
                if value:
                    out[i] = value.encode("utf-8")
        stamp = None
        if self._gmt is not None and self._gmt < n:
            stamp = _utc_stamp(values[self._gmt], None)  # already UTC
        if stamp is None and self._logtime is not None and self._logtime < n:
            stamp = _utc_stamp(values[self._logtime], self.zone)
        if stamp is None and self._date_time is not None and max(self._date_time) < n:
            stamp = _utc_stamp(f"{values[self._date_time[0]]} {values[self._date_time[1]]}", self.zone)
        if stamp is not None:
            out[_DATE], out[_TIME] = stamp
        for a, p in _ADDRESS_PORT:
            address = _sql_address(out[a])
            if out[p] not in (b"-", b"") and b":" not in address:
                address = address + b":" + out[p]
            out[a] = address
        return out

    def build_batch(self, rows: list[list[str]]) -> list[bytes]:
        """The canonical fields of many records, flat (len(CANON) per record), as `build` gives them
        one by one, but worked out a column at a time."""
        if not rows:
            return []
        if min(map(len, rows)) < self._need:  # some record lacks a column: one by one
            return list(chain.from_iterable(map(self.build, rows)))
        n = len(rows)
        columns = list(zip(*rows))  # as long as the shortest record: enough (_need)
        out: list[list[bytes]] = [[b"-"] * n for _ in CANON]
        for i, j in self._pairs:
            out[i] = [v.encode("utf-8") if v else b"-" for v in map(str.strip, columns[j])]
        stamps: list[tuple[bytes, bytes] | None] = [None] * n
        for texts, zone in self._time_sources(columns):
            stamps = [s if s is not None else _utc_stamp(t, zone) for s, t in zip_strict(stamps, texts)]
        out[_DATE] = [s[0] if s is not None else d for s, d in zip_strict(stamps, out[_DATE])]
        out[_TIME] = [s[1] if s is not None else t for s, t in zip_strict(stamps, out[_TIME])]
        for a, p in _ADDRESS_PORT:
            out[a] = [
                address + b":" + port if port not in (b"-", b"") and b":" not in address else address
                for address, port in zip_strict(map(_sql_address, out[a]), out[p])
            ]
        return list(chain.from_iterable(zip_strict(*out)))

    def _time_sources(self, columns: list[tuple[str, ...]]) -> list[tuple[Sequence[str], ZoneInfo | None]]:
        """Where a record's time is read, in order of preference (as in `build`)."""
        sources: list[tuple[Sequence[str], ZoneInfo | None]] = []
        if self._gmt is not None:
            sources.append((columns[self._gmt], None))
        if self._logtime is not None:
            sources.append((columns[self._logtime], self.zone))
        if self._date_time is not None:
            d, t = self._date_time
            sources.append(([f"{a} {b}" for a, b in zip_strict(columns[d], columns[t])], self.zone))
        return sources


def _utc_stamp(text: str, zone: ZoneInfo | None) -> tuple[bytes, bytes] | None:
    """(date, time) in UTC of a logged time (local to `zone` when given). An ISO time's fraction of a
    second is cut before the cached conversion, so that the records of one second share it."""
    if (
        len(text) > 19
        and text[4] == text[7] == "-"
        and text[10] in " T"
        and text[13] == text[16] == ":"
        and _AFTER_SECONDS.fullmatch(text, 19)
    ):
        text = text[:19]
    return _utc_stamp_of(text, zone)


@lru_cache(maxsize=65536)
def _utc_stamp_of(text: str, zone: ZoneInfo | None) -> tuple[bytes, bytes] | None:
    if (
        zone is None
        and len(text) == 19
        and text[4] == text[7] == "-"
        and text[10] in " T"
        and text[13] == text[16] == ":"
        and text.isascii()
    ):
        try:
            datetime.fromisoformat(text)  # a valid ISO time in UTC is its own answer
        except ValueError:
            pass
        else:
            return text[:10].encode("ascii"), text[11:].encode("ascii")
    found = parse_datetime(text)
    if found is None:
        return None
    moment = to_utc(found, zone)
    return moment.strftime("%Y-%m-%d").encode(), moment.strftime("%H:%M:%S").encode()


@lru_cache(maxsize=65536)
def _sql_address(value: bytes) -> bytes:
    """SQL exports: ISA stores IPv4 as a number, TMG as a GUID-like string whose first group is the IPv4."""
    text = value.decode("utf-8", "replace")
    if re.fullmatch(r"\d{5,10}", text):
        return str(ipaddress.IPv4Address(int(text) & 0xFFFFFFFF)).encode()
    m = re.fullmatch(r"([0-9A-Fa-f]{8})-([0-9A-Fa-f]{4})-([0-9A-Fa-f]{4})-([0-9A-Fa-f]{4})-([0-9A-Fa-f]{12})", text)
    if m:
        if m.group(2).upper() == "FFFF" and set(m.group(3) + m.group(4) + m.group(5)) <= {"0"}:
            return str(ipaddress.IPv4Address(int(m.group(1), 16))).encode()
        return str(ipaddress.IPv6Address(int("".join(m.groups()), 16))).encode()
    return value


def scan_records(
    scanner: Scanner,
    records: Iterable[tuple[int, list[str] | None, str]],
    builder: CanonBuilder,
    kind: LogKind,
) -> None:
    """Scan (line, values, problem) records already split by a format reader."""
    scanner.set_layout(canon_layout(kind))
    pending: list[list[str]] = []
    numbers: list[int] = []

    def flush() -> None:
        if pending:
            scanner.consume(builder.build_batch(pending), len(CANON), numbers.__getitem__)

    for number, values, problem in records:
        if values is None:
            scanner.summary.bad_line(scanner.source, number, problem, truncated=problem.startswith("truncated"))
            continue
        pending.append(values)
        numbers.append(number)
        if len(pending) >= 4096:
            flush()
            pending, numbers = [], []
    flush()


def text_lines(blocks: Iterable[tuple[bytes, bool]]) -> Iterator[tuple[int, str, bool, bool]]:
    """(line number, text, is garbage, is an unterminated last line)."""
    number = 0
    for block, last in blocks:
        raws = block.split(b"\n")
        clean = block.endswith(b"\n")
        if clean:
            raws.pop()
        for k, raw in enumerate(raws):
            number += 1
            raw = raw.rstrip(b"\r")
            yield number, _text(raw), bool(_GARBAGE.search(raw)), last and not clean and k == len(raws) - 1


def isa_text_records(
    lines: Iterable[tuple[int, str, bool, bool]], kind: LogKind
) -> Iterator[tuple[int, list[str] | None, str]]:
    """The ISA/TMG text format: ", " separated, every field present, known width per product."""
    widths = FIXED_WEB if kind is LogKind.WEB else FIXED_FIREWALL
    for number, text, garbage, unterminated in lines:
        if not text or text.startswith("#"):
            continue
        if garbage:
            yield number, None, ("truncated last line skipped" if unterminated else "binary garbage skipped")
            continue
        values = text.split(", ")
        width = _fit_width(len(values), widths)
        if width is None:
            yield (
                number,
                None,
                (
                    "truncated last line"
                    if unterminated
                    else f"{len(values)} fields, not a known {kind.value} text-log width"
                ),
            )
            continue
        if len(values) > width:  # FilterInfo holds ", " of its own
            surplus = len(values) - width
            values[WEB_FILTERINFO : WEB_FILTERINFO + surplus + 1] = [
                ", ".join(values[WEB_FILTERINFO : WEB_FILTERINFO + surplus + 1])
            ]
        yield number, [v.strip() for v in values], ""


def _fit_width(count: int, widths: dict[int, Layout]) -> int | None:
    if count in widths:
        return count
    if widths is FIXED_WEB:
        fits = [w for w in widths if w < count]
        return max(fits) if fits else None
    return None


def viewer_records(
    lines: Iterable[tuple[int, str, bool, bool]], width: int
) -> Iterator[tuple[int, list[str] | None, str]]:
    """Log viewer / Live Logging copies: TAB separated under a header row of display names."""
    for number, text, garbage, unterminated in lines:
        if number == 1 or not text:
            continue
        if garbage:
            yield number, None, ("truncated last line skipped" if unterminated else "binary garbage skipped")
            continue
        values = text.split("\t")
        if len(values) != width:
            if unterminated and len(values) < width:
                yield number, None, f"truncated last line ({len(values)} of {width} columns)"
            else:
                yield number, None, f"{len(values)} columns where the header has {width}"
            continue
        yield number, values, ""


_COLLAPSED_ACTION = re.compile("|".join(re.escape(a) for a in ACTION_STRINGS))
_COLLAPSED_RESULT = re.compile(
    r"\s(0x[0-9a-fA-F]+)\s+([A-Z][A-Z0-9_]+)\s|\s(\d{1,5})\s+([A-Z][A-Za-z .'-]*?)\s+0x[0-9a-fA-F]+\s"
)
_COLLAPSED_TYPE = re.compile(r"(Firewall|Web Proxy(?: Filter| \(Forward\)| \(Reverse\))?)\s*\S*\s*$")
_COLLAPSED_TIMES = re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\s+\d{1,2}:\d{2}:\d{2}")


def collapsed_viewer_records(
    lines: Iterable[tuple[int, str, bool, bool]],
) -> Iterator[tuple[int, list[str] | None, str]]:
    """A log-viewer copy whose TABs were collapsed to spaces: columns are gone, so only what can be
    recognised by its shape is read (action string, result code, record type, the GMT time)."""
    for number, text, garbage, unterminated in lines:
        if number == 1 or not text:
            continue
        if garbage:
            yield number, None, ("truncated last line skipped" if unterminated else "binary garbage skipped")
            continue
        action = _COLLAPSED_ACTION.search(text)
        result = _COLLAPSED_RESULT.search(f" {text} ")
        rtype = _COLLAPSED_TYPE.search(text)
        if not action or not result:
            yield number, None, "no action string and result code recognised"
            continue
        code = result.group(1) or result.group(3)
        times = _COLLAPSED_TIMES.findall(text)
        gmt = times[1] if len(times) > 1 else (times[0] if times else "")
        yield number, [action.group(0), code, rtype.group(1) if rtype else "Firewall", gmt], ""


COLLAPSED_LAYOUT = Layout.from_names(["action", "result code", "log record type", "gmt log time"], LogKind.MIXED)


def csv_records(
    text_stream: io.TextIOBase, width: int, header: bool = True
) -> Iterator[tuple[int, list[str] | None, str]]:
    """Records of a SQL-export CSV; `header`: the first line is the header (not a later byte range)."""
    reader = csv.reader(text_stream)
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a field over csv's limit (a quoted field running on, a huge value)
            yield reader.line_num, None, f"unreadable CSV record skipped ({exc})"
            continue
        number = reader.line_num
        if (header and number == 1) or not values:
            continue
        if _GARBAGE_TEXT.search("".join(values)):
            yield number, None, "binary garbage skipped"
            continue
        if len(values) != width:
            yield number, None, f"{len(values)} columns where the header has {width}"
            continue
        yield number, values, ""


def local_zone_note(local: bool, zone: ZoneInfo | None) -> str:
    if local and zone is None:
        return "times in this format are the TMG server's local time; no --tz given, so they are taken as UTC"
    return ""
