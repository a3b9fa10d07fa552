"""The `logs` probe: Forefront TMG / ISA Server Firewall and Web Proxy logs -> `log.status_summary` facts.

Spec keys: `paths` (files, folders, globs; .gz and .zip read in place), `tz` (the TMG server's time
zone, for formats that log local time), `tmg_addresses`, `internal_addresses` (for deciding legs),
`jobs` (worker processes; default: both cores).

Work is cut into units, a whole file or a byte range of a large plain W3C file; each unit gives a
`LogSummary`; summaries are merged in file order and the facts are made once, at the end.
"""

from __future__ import annotations

import codecs
import concurrent.futures
import gc
import io
import os
import re
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from diagnose.bounds import READ_ERRORS, input_size, open_regular, read_error
from diagnose.compat import removeprefix, zip_strict
from diagnose.errors import InputError, UsageError
from diagnose.facts import ProbeStatus
from diagnose.probes import ProbeContext, ProbeResult
from diagnose.probes.inputs import LogInput, expand
from diagnose.probes.logs.layout import FIXED_FIREWALL, FIXED_WEB, Layout, LogKind
from diagnose.probes.logs.legs import Site
from diagnose.probes.logs.records import (
    COLLAPSED_LAYOUT,
    CanonBuilder,
    collapsed_viewer_records,
    csv_records,
    isa_text_records,
    local_zone_note,
    scan_records,
    text_lines,
    viewer_records,
)
from diagnose.probes.logs.scan import (
    BLOCK,
    bounded_blocks,
    decoded_blocks,
    line_blocks,
    long_line_note,
    scan_w3c,
    stream_line_blocks,
    utf16_encoding,
)
from diagnose.probes.logs.scanner import Scanner
from diagnose.probes.logs.summary import LogSummary, build_facts
from diagnose.probes.params import ProbeParams
from diagnose.probes.workers import mp_context

__all__ = ["LogInput", "collect", "probe", "summarise"]

SPLIT_AT = 16 << 20  # plain W3C files larger than this are cut into byte ranges of about this size


@dataclass(frozen=True)
class Unit:
    log: LogInput
    start: int = 0
    end: int | None = None
    fields: tuple[str, ...] | None = None  # the #Fields in force at `start` (byte ranges after the first)
    index: int = 0
    format: str = "w3c"  # of a byte range: "w3c", or "sql-csv" (then `fields` is the CSV header)


# ------------------------------------------------------------------ format detection


@dataclass(frozen=True)
class Detected:
    format: str  # w3c | syslog | isa-text | viewer | viewer-collapsed | sql-csv
    kind: LogKind
    header: tuple[str, ...] = ()


def detect(head: bytes, name: str) -> Detected:
    """Tell the format from the first kilobytes; raises NotALogError with the reason."""
    text = head.decode("utf-8", "replace")
    lines = [ln.rstrip("\r") for ln in text.split("\n")[:50]]
    first = next((ln for ln in lines if ln.strip()), "")
    for ln in lines:
        if ln.lower().startswith("#fields:"):
            names = ln[8:].strip().split("\t")
            return Detected("w3c", Layout.from_names(names).kind, tuple(n.strip() for n in names))
        if "ISAWebLog" in ln or "ISAFWSLog" in ln:
            return Detected("syslog", LogKind.WEB if "ISAWebLog" in ln else LogKind.FIREWALL)
    if first.startswith("#Software:") or first.startswith("#Version:"):
        return Detected("w3c", LogKind.FIREWALL)
    if "\t" in first:
        names = [c.strip() for c in first.split("\t")]
        layout = Layout.from_names(names, LogKind.MIXED)
        if layout.looks_like_log():
            kind = LogKind.MIXED if "record_type" in layout.index else Layout.from_names(names).kind
            return Detected("viewer", kind, tuple(names))
    if "," in first and ", " not in first:
        names = [c.strip().strip('"') for c in first.split(",")]
        lowered = {n.lower() for n in names}
        if "resultcode" in lowered and ({"logtime", "gmtlogtime"} & lowered):
            kind = LogKind.WEB if {"clientip", "uri", "operation"} & lowered else LogKind.FIREWALL
            return Detected("sql-csv", kind, tuple(names))
    if "Result Code" in first and "Log Time" in first:
        return Detected("viewer-collapsed", LogKind.MIXED)
    if ", " in first:
        values = first.split(", ")
        date_at = 1 if re.fullmatch(r"\d{1,2}/\d{1,2}/\d{4}", values[1].strip() if len(values) > 1 else "") else None
        web_date = len(values) > 4 and re.fullmatch(r"\d{1,2}/\d{1,2}/\d{4}", values[4].strip())
        if date_at is not None and len(values) in (28, 31, 44):
            return Detected("isa-text", LogKind.FIREWALL)
        if web_date and len(values) >= 29:
            return Detected("isa-text", LogKind.WEB)
    raise NotALogError(name)


class NotALogError(InputError):
    def __init__(self, name: str) -> None:
        super().__init__(
            "not a TMG or ISA Server log (no W3C #Fields header, log-viewer header, SQL export "
            "header, syslog ISAWebLog/ISAFWSLog tag or ISA text-format record found)",
            name,
        )


# ------------------------------------------------------------------ units and workers


def plan_units(logs: Sequence[LogInput], jobs: int) -> tuple[list[Unit], list[str]]:
    units: list[Unit] = []
    problems: list[str] = []
    for log in logs:
        size = input_size(log.path) if log.member is None else 0
        if log.member is None and size > SPLIT_AT and jobs > 1 and log.plain():
            try:
                units.extend(_ranges(log, size))
                continue
            except OSError as exc:
                problems.append(f"{log.name}: {exc.strerror or exc}")
        units.append(Unit(log))
    return units, problems


def _ranges(log: LogInput, size: int) -> list[Unit]:
    """Byte ranges cut at line ends. Each range is given the file's first #Fields; a range that
    follows a header change is read again with the right one when the results are merged."""
    with open_regular(log.path) as fh:
        head = fh.read(65536)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            return [Unit(log)]
        if b"#Fields:" not in head:
            return _csv_ranges(log, fh, head, size)
        fields = _fields_of(head)
        bounds = [0]
        while bounds[-1] + SPLIT_AT < size:
            fh.seek(bounds[-1] + SPLIT_AT)
            tail = fh.read(1 << 20)
            cut = tail.find(b"\n")
            if cut < 0 or bounds[-1] + SPLIT_AT + cut + 1 >= size:
                break
            bounds.append(bounds[-1] + SPLIT_AT + cut + 1)
        bounds.append(size)
    return [Unit(log, bounds[k], bounds[k + 1], fields if k else None, k) for k in range(len(bounds) - 1)]


def _csv_ranges(log: LogInput, fh: IO[bytes], head: bytes, size: int) -> list[Unit]:
    """A SQL-export CSV cut at line ends that are not inside a quoted field: the number of quotes
    before each cut is even (an escaped quote is two). Every range is given the header."""
    try:
        detected = detect(removeprefix(head, codecs.BOM_UTF8), log.name)
    except NotALogError:
        return [Unit(log)]
    if detected.format != "sql-csv" or utf16_encoding(removeprefix(head, codecs.BOM_UTF8)) is not None:
        return [Unit(log)]
    bounds, target, odd, pos = [0], SPLIT_AT, 0, 0
    fh.seek(0)
    while target < size and (chunk := fh.read(1 << 20)):
        i = 0
        while target < pos + len(chunk) and i < len(chunk):
            at = max(target - pos, i)
            odd ^= chunk.count(b'"', i, at) & 1
            i = at
            while i < len(chunk):  # the first line end after which no quoted field is open
                nl = chunk.find(b"\n", i)
                if nl < 0:
                    odd ^= chunk.count(b'"', i) & 1
                    i = len(chunk)
                    break
                odd ^= chunk.count(b'"', i, nl) & 1
                i = nl + 1
                if not odd:
                    if pos + i < size:
                        bounds.append(pos + i)
                    target = pos + i + SPLIT_AT
                    break
        odd ^= chunk.count(b'"', i) & 1
        pos += len(chunk)
    bounds.append(size)
    header = detected.header
    return [Unit(log, bounds[k], bounds[k + 1], header, k, "sql-csv") for k in range(len(bounds) - 1)]


def _fields_of(head: bytes) -> tuple[str, ...] | None:
    at = head.find(b"#Fields:")
    if at < 0:
        return None
    end = head.find(b"\n", at)
    line = head[at + 8 : end if end >= 0 else len(head)].decode("utf-8", "replace").strip("\r\n ")
    return tuple(n.strip() for n in line.split("\t"))


def run_unit(
    unit: Unit,
    site: Site,
    scanner_type: Callable[[LogSummary, Site, str], Scanner] = Scanner,
    deadline: float | None = None,
) -> tuple[LogSummary, int, tuple[str, ...] | None]:
    """Read one unit; returns its summary, how many lines it held and the #Fields in force at its end.
    Past `deadline` (a `time.monotonic()` value) reading stops and the file counts as not read to its end."""
    # The scan makes millions of short-lived lists of bytes and no reference cycles: the cyclic
    # garbage collector would only walk them over and over.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _run_unit(unit, site, scanner_type, deadline)
    finally:
        if was_enabled:
            gc.enable()


def _run_unit(
    unit: Unit,
    site: Site,
    scanner_type: Callable[[LogSummary, Site, str], Scanner] = Scanner,
    deadline: float | None = None,
) -> tuple[LogSummary, int, tuple[str, ...] | None]:
    summary = LogSummary()
    log = unit.log
    scanner = scanner_type(summary, site, log.name)
    long_line = long_line_note(summary, log.name)
    try:
        with log.open(deadline) as stream:
            if unit.end is not None and unit.format == "sql-csv":
                return _run_csv_range(unit, scanner, stream, site)
            if unit.end is not None:
                stream.seek(unit.start)
                layout = Layout.from_names(unit.fields) if unit.fields else None
                lines = scan_w3c(scanner, stream_line_blocks(stream, b"", unit.end - unit.start, long_line), 1, layout)
                scanner.flush()
                summary.lines = lines
                if unit.index == 0:
                    summary.files.append(log.name)
                    summary.formats["w3c"] += 1
                return summary, lines, scanner.layout.names if scanner.layout else None
            head = stream.read(65536)
            if head.startswith(codecs.BOM_UTF8):
                head = head[3:]
            if utf16_encoding(head) is None:
                detected = detect(head, log.name)
                summary.files.append(log.name)
                summary.formats[detected.format] += 1
                if detected.format in ("w3c", "syslog"):
                    summary.lines = scan_w3c(scanner, stream_line_blocks(stream, head, long_line=long_line))
                else:
                    _scan_detected(scanner, detected, _chain(head, _raw_blocks(stream)), site)
            else:
                blocks_iter = decoded_blocks(stream, head)
                first = next(blocks_iter, b"")
                detected = detect(first[:65536], log.name)
                summary.files.append(log.name)
                summary.formats[detected.format] += 1
                _scan_detected(scanner, detected, _chain(first, blocks_iter), site)
    except NotALogError:
        raise
    except READ_ERRORS as exc:
        summary.unreadable += 1
        summary.note(log.name, 0, f"could not be read to its end: {read_error(exc)}")
    scanner.flush()
    return summary, summary.lines, scanner.layout.names if scanner.layout else None


def _run_csv_range(
    unit: Unit, scanner: Scanner, stream: IO[bytes], site: Site
) -> tuple[LogSummary, int, tuple[str, ...] | None]:
    """One byte range of a SQL-export CSV (see `_csv_ranges`); the first holds the header line."""
    assert unit.end is not None and unit.fields is not None
    summary = scanner.summary
    stream.seek(unit.start)
    counted = _LineCounter(stream, unit.end - unit.start)
    detected = detect(",".join(unit.fields).encode("utf-8"), unit.log.name)
    layout = Layout.from_names(list(detected.header), detected.kind)
    local = "gmt" not in layout.index
    if unit.index == 0:
        summary.files.append(unit.log.name)
        summary.formats[detected.format] += 1
        _zone_note(scanner, local, site.zone)
    blocks = bounded_blocks(iter(counted), long_line_note(summary, unit.log.name))
    # a raw stream (no read1, no name), which TextIOWrapper reads with read(): typeshed asks for a buffered one
    text = io.TextIOWrapper(_BlockReader(blocks), encoding="utf-8", errors="replace", newline="")  # type: ignore[type-var]
    records = csv_records(text, layout.width, header=unit.index == 0)
    scan_records(scanner, records, CanonBuilder(layout, site.zone, local), detected.kind)
    scanner.flush()
    summary.lines = counted.lines
    return summary, summary.lines, unit.fields


class _LineCounter:
    """The blocks of the next `length` bytes of a stream, counting their lines as they pass."""

    def __init__(self, stream: IO[bytes], length: int) -> None:
        self.stream, self.left, self.lines = stream, length, 0

    def __iter__(self) -> Iterator[bytes]:
        last = b"\n"
        while self.left > 0 and (block := self.stream.read(min(BLOCK, self.left))):
            self.left -= len(block)
            self.lines += block.count(b"\n")
            last = block[-1:]
            yield block
        if last != b"\n":
            self.lines += 1  # a last line without its line end


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _raw_blocks(stream: IO[bytes]) -> Iterator[bytes]:
    while block := stream.read(BLOCK):
        yield block


def _scan_detected(scanner: Scanner, detected: Detected, blocks: Iterator[bytes], site: Site) -> None:
    summary = scanner.summary
    long_line = long_line_note(summary, scanner.source)
    if detected.format in ("w3c", "syslog"):
        summary.lines = scan_w3c(scanner, line_blocks(blocks, long_line))
        return
    zone = site.zone
    if detected.format == "sql-csv":
        layout = Layout.from_names(list(detected.header), detected.kind)
        local = "gmt" not in layout.index
        _zone_note(scanner, local, zone)
        # _BlockReader is a raw stream, which TextIOWrapper reads well (typeshed asks for a buffered one)
        text = io.TextIOWrapper(
            _BlockReader(bounded_blocks(blocks, long_line)),
            encoding="utf-8",  # type: ignore[type-var]
            errors="replace",
            newline="",
        )
        scan_records(scanner, csv_records(text, layout.width), CanonBuilder(layout, zone, local), detected.kind)
        return
    lines = text_lines(line_blocks(blocks, long_line))
    if detected.format == "viewer":
        layout = Layout.from_names(list(detected.header), detected.kind)
        local = "gmt" not in layout.index
        _zone_note(scanner, local, zone)
        scan_records(scanner, viewer_records(lines, layout.width), CanonBuilder(layout, zone, local), detected.kind)
    elif detected.format == "viewer-collapsed":
        summary.note(
            scanner.source,
            1,
            "log-viewer copy with its TABs collapsed: only the action, result code, "
            "record type and GMT time can be recognised",
        )
        scan_records(
            scanner,
            collapsed_viewer_records(lines),
            CanonBuilder(COLLAPSED_LAYOUT, zone, False),
            LogKind.MIXED,
        )
    elif detected.format == "isa-text":
        widths = FIXED_WEB if detected.kind is LogKind.WEB else FIXED_FIREWALL
        layout = max(widths.values(), key=lambda lay: lay.width)
        # all fixed layouts of one kind share their leading positions; the builder reads by name
        _zone_note(scanner, True, zone)
        records = list_by_width(isa_text_records(lines, detected.kind), widths)
        for width, batch in records:
            scan_records(scanner, batch, CanonBuilder(widths.get(width, layout), zone, True), detected.kind)


def list_by_width(
    records: Iterator[tuple[int, list[str] | None, str]], widths: Mapping[int, Layout]
) -> Iterator[tuple[int, list[tuple[int, list[str] | None, str]]]]:
    """Group consecutive records of the same width (one text log holds one width, but be safe)."""
    batch: list[tuple[int, list[str] | None, str]] = []
    width = 0
    for record in records:
        w = len(record[1]) if record[1] is not None else width
        if batch and w != width:
            yield width, batch
            batch = []
        width = w
        batch.append(record)
        if len(batch) >= 4096:
            yield width, batch
            batch = []
    if batch:
        yield width, batch


def _zone_note(scanner: Scanner, local: bool, zone: Any) -> None:
    note = local_zone_note(local, zone)
    if note:
        scanner.summary.local_without_tz = True
        scanner.summary.note(scanner.source, 0, note)


class _BlockReader(io.RawIOBase):
    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buf:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._buf = block
        n = min(len(target), len(self._buf))
        target[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


# ------------------------------------------------------------------ the whole run


def summarise(
    paths: Sequence[str], site: Site, jobs: int = 0, progress: Any = None, deadline: float | None = None
) -> tuple[LogSummary, list[str]]:
    """Read every log under `paths`; returns the merged summary and the problems met. Past `deadline`
    (a `time.monotonic()` value) reading stops: what was read is kept and the result is partial."""
    logs, problems = expand(paths)
    jobs = jobs or min(2, os.cpu_count() or 1)
    units, more = plan_units(logs, jobs)
    problems += more
    total = LogSummary()
    line_base: dict[str, int] = {}
    fields_at_end: dict[str, tuple[str, ...] | None] = {}
    done = 0

    def absorb(unit: Unit, outcome: tuple[LogSummary, int, tuple[str, ...] | None] | BaseException) -> None:
        nonlocal done
        name = unit.log.name
        if isinstance(outcome, NotALogError):
            if unit.log.named:
                raise outcome
            problems.append(f"{name}: skipped, {outcome.message}")
            return
        if isinstance(outcome, BaseException):
            raise outcome
        if unit.index and unit.fields != fields_at_end.get(name):
            # the header changed in an earlier range: read this one again with the header in force
            unit = Unit(unit.log, unit.start, unit.end, fields_at_end.get(name), unit.index)
            outcome = run_unit(unit, site, deadline=deadline)
        summary, lines, end_fields = outcome
        base = line_base.get(name, 0)
        total.merge(summary.shifted(name, base))
        line_base[name] = base + lines
        fields_at_end[name] = end_fields
        done += 1
        if progress is not None:
            progress(f"{done}/{len(units)} parts read")

    if jobs <= 1 or len(units) <= 1:
        for n, unit in enumerate(units):
            if deadline is not None and time.monotonic() > deadline:
                total.unreadable += 1
                problems.append(f"stopped at the deadline: {len(units) - n} of {len(units)} parts not read")
                break
            try:
                absorb(unit, run_unit(unit, site, deadline=deadline))
            except NotALogError as exc:
                absorb(unit, exc)
    else:
        context = mp_context()  # no fork from a process running other threads (see probes/workers.py)
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=jobs, mp_context=context, initializer=_ignore_interrupts
        ) as pool:
            futures = [pool.submit(run_unit, unit, site, Scanner, deadline) for unit in units]
            for unit, future in zip_strict(units, futures):
                try:
                    absorb(unit, future.result())
                except NotALogError as exc:
                    absorb(unit, exc)
    for source, line, message in total.notes:
        problems.append(f"{source}:{line}: {message}" if line else f"{source}: {message}")
    if total.notes_dropped:
        problems.append(f"... and {total.notes_dropped} more problems")
    if total.event_times >= total.max_event_times:
        problems.append(
            f"the times of {total.max_event_times:,} Status 64 entries and client errors were kept for the coincidence "
            f"check; {total.s64_unchecked + total.failures_unchecked:,} more were counted but not checked"
        )
    return total, problems


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the parent, which stops the run and keeps what was read."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass(frozen=True)
class LogsParams(ProbeParams):
    """Parameters of the `logs` probe: the TMG / ISA log files, folders or globs, the TMG server's time
    zone (for formats that log local time), the addresses that tell the legs apart, and worker processes
    (0 = one per core, at most 2)."""

    probe = "logs"
    paths: tuple[str, ...] = ()
    tz: str | None = None
    tmg_addresses: tuple[str, ...] = ()
    internal_addresses: tuple[str, ...] = ()
    jobs: int = 0


def site_from(tmg_addresses: Sequence[str], internal_addresses: Sequence[str], tz: str | None) -> Site:
    """The legs' addresses and the time zone; an unknown zone is a UsageError."""
    if tz:
        from diagnose.compat import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError):
            raise UsageError(f"unknown time zone {tz!r} (use an IANA name such as Europe/Berlin)") from None
    return Site(
        frozenset(a.strip() for a in tmg_addresses if a.strip()),
        frozenset(a.strip() for a in internal_addresses if a.strip()),
        str(tz) if tz else None,
    )


def collect(ctx: ProbeContext, spec: LogsParams | Mapping[str, Any]) -> tuple[ProbeResult, list[str]]:
    """Run the probe and also return the problems met (bad lines, skipped files)."""
    params = LogsParams.of(spec)
    paths = params.paths
    if not paths:
        return ProbeResult.unavailable("no TMG logs given (--log PATH)"), []
    site = site_from(params.tmg_addresses, params.internal_addresses, params.tz)
    jobs = params.jobs
    check = ctx.check or "logs"
    summary, problems = summarise(
        [str(p) for p in paths], site, jobs, lambda message: ctx.progress(check, message), ctx.deadline
    )
    if not summary.files:
        reason = "; ".join(problems) or "no log files found"
        return ProbeResult((), ProbeStatus.UNAVAILABLE, reason), problems
    facts, excerpts = build_facts(summary, ctx.check)
    status = ProbeStatus.PARTIAL if summary.partial else ProbeStatus.COMPLETE
    reason = ""
    if summary.partial:
        reason = (
            f"{summary.bad_lines} line(s) could not be read"
            + (f", {summary.truncated} truncated" if summary.truncated else "")
            + (f", {summary.unreadable} file(s) not read to the end" if summary.unreadable else "")
        )
    return ProbeResult(tuple(facts), status, reason, excerpts), problems


def probe(ctx: ProbeContext, spec: LogsParams | Mapping[str, Any]) -> ProbeResult:
    result, problems = collect(ctx, spec)
    for problem in problems:
        ctx.warn(problem)
    return result
