"""The `proxylogs` probe: logs of the proxies that publish Exchange after TMG -> `proxy.status_summary` facts.

IIS W3C (IIS 7.5/8.5/10, Exchange front and back end, ARR), Exchange 2013+ HttpProxy CSV, HAProxy
(HTTP and TCP formats, with or without a syslog prefix) and nginx (access and error logs). Each file's
format is told from its content; files, folders and globs are read, plain or .gz or inside .zip.

Spec keys: `paths` (files, folders, globs; rotated logs such as access.log.1, access.log.2.gz are read
oldest first, each file once: rotation.py), `jobs` (worker processes for big plain files; 0: up to 2),
`heartbeat_seconds` (else the profile's; for the idle-timeout detector, diagnose/probes/proxylogs/idle.py),
`nginx_log_format` (nginx.conf or a file of `log_format` statements, a statement, or a bare format; or a
list of them: nginx access logs written in such a format, logformat.py; else the profile's).

A log in UTF-16 (with its byte order mark: IIS can write them so) reads as one in UTF-8 (lines.text_stream).
Every file is streamed in blocks of whole lines (memory bounded by the block and the longest line
kept, 64 KiB); counts are exact; a line that cannot be read is counted, named by file:line and makes
the result partial, as does a file that ends early (a cut .gz, a damaged zip member).
"""

from __future__ import annotations

import os
import time
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from diagnose.bounds import BoundExceeded, DeadlineExceeded
from diagnose.errors import InputError
from diagnose.facts import ProbeStatus
from diagnose.probes import ProbeContext, ProbeResult
from diagnose.probes.inputs import LogInput, expand
from diagnose.probes.params import ProbeParams
from diagnose.probes.proxylogs import haproxy, httpproxy, iis, logformat, nginx, parts, records, w3c
from diagnose.probes.proxylogs.lines import MAX_LINE, line_blocks, text_stream
from diagnose.probes.proxylogs.rotation import in_time_order
from diagnose.probes.proxylogs.tally import Summary, build_facts, iter_notes

__all__ = ["NotAProxyLogError", "collect", "detect", "probe", "summarise"]

HEAD = 65536
FORMATS = ("iis-w3c", "exchange-httpproxy", "haproxy-http", "haproxy-tcp", "nginx-access", "nginx-error")


class NotAProxyLogError(InputError):
    def __init__(self, name: str) -> None:
        super().__init__(
            "not a proxy log this probe knows (no IIS or Exchange HttpProxy #Fields header, and no HAProxy "
            "or nginx access/error record in its first lines)",
            name,
        )


def detect(head: bytes, name: str, custom: Sequence[records.Shape] = ()) -> str:
    """The format of a log from its first kilobytes (one of FORMATS, or the format of a `custom` shape,
    tried first); NotAProxyLogError when none fits."""
    lines = [ln.rstrip(b"\r") for ln in head.split(b"\n")[:50]]
    for line in lines:
        low = line.lower()
        if low.startswith(b"#log-type: httpproxy"):
            return "exchange-httpproxy"
        if low.startswith(b"#fields:") and b"\t" not in line:
            if b"," in line and b"httpstatus" in low:
                return "exchange-httpproxy"
            if b"sc-status" in low or b"cs-uri-stem" in low:
                return "iis-w3c"
    for line in lines:
        if not line.strip() or line.startswith(b"#"):
            continue
        probe_line = line + b"\n"
        for shape in (*custom, *haproxy.SHAPES, *nginx.ACCESS_SHAPES, *nginx.ERROR_SHAPES):
            if shape.pattern.match(probe_line):
                return shape.format
    raise NotAProxyLogError(name)


def reader(
    found: str, summary: Summary, name: str, custom: Sequence[records.Shape] = ()
) -> w3c.Reader | records.Reader:
    """The reader of a log in format `found` (one of FORMATS, or of a `custom` shape)."""
    for shape in custom:
        if shape.format == found:
            return records.Reader((shape,), summary, name)
    if found == "iis-w3c":
        return w3c.Reader(iis.DIALECT, summary, name)
    if found == "exchange-httpproxy":
        return w3c.Reader(httpproxy.DIALECT, summary, name)
    if found.startswith("haproxy"):
        return records.Reader(haproxy.SHAPES if found == "haproxy-http" else haproxy.SHAPES[::-1], summary, name)
    if found == "nginx-access":
        return records.Reader(nginx.ACCESS_SHAPES, summary, name)
    return records.Reader(nginx.ERROR_SHAPES, summary, name)


def too_long(summary: Summary, name: str) -> Callable[[int], None]:
    def told(line: int) -> None:
        summary.bad_line(name, line, f"line longer than {MAX_LINE} bytes skipped")

    return told


def _read(log: LogInput, summary: Summary, custom: Sequence[records.Shape] = (), deadline: float | None = None) -> None:
    name = log.name
    try:
        with log.open(deadline) as stream:
            text, head = text_stream(stream, stream.read(HEAD))
            found = detect(head, name, custom)
            summary.files.append(name)
            summary.formats[found] += 1
            reader(found, summary, name, custom).read(line_blocks(text, head, too_long(summary, name)))
            if getattr(text, "cut", False):
                raise EOFError("it ends in the middle of a UTF-16 character")
    except NotAProxyLogError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, BoundExceeded, DeadlineExceeded) as exc:
        if name not in summary.files:
            summary.files.append(name)
        summary.unreadable += 1
        summary.note(name, 0, f"could not be read to its end: {exc}")


def summarise(
    paths: Sequence[str], jobs: int = 0, custom: Sequence[records.Shape] = (), deadline: float | None = None
) -> tuple[Summary, list[str]]:
    """Read every log under `paths`; (summary, problems met). A named file that is not a proxy log is an
    InputError; one found in a folder is skipped with a note. Big plain files are read in byte ranges
    by `jobs` worker processes (default: up to 2), with the same result as reading them here; not when
    `custom` shapes (nginx log_format, logformat.py) are given: those are read here. Past `deadline` (a
    `time.monotonic()` value) reading stops: what was read is kept, and the summary is partial."""
    logs, problems = expand(paths, rotated=True)
    logs = in_time_order(logs)
    summary = Summary()
    with parts.Workers(logs, 1 if custom else jobs or min(2, os.cpu_count() or 1), deadline) as workers:
        for n, log in enumerate(logs):
            if deadline is not None and time.monotonic() > deadline:
                summary.unreadable += 1
                summary.note(log.name, 0, f"stopped at the deadline: {len(logs) - n} of {len(logs)} files not read")
                break
            if workers.merge(log, summary):
                continue
            try:
                _read(log, summary, custom, deadline)
            except NotAProxyLogError as exc:
                if log.named:
                    raise
                problems.append(f"{log.name}: skipped, {exc.message}")
    problems += list(iter_notes(summary))
    return summary, problems


@dataclass(frozen=True)
class ProxyLogsParams(ProbeParams):
    """Parameters of the `proxylogs` probe: the log files, folders or globs, worker processes for big plain
    logs (0 = one per core, at most 2), the clients' EAS heartbeat / keep-alive in seconds, and the nginx
    log_format(s) (or nginx.conf paths) of custom-format access logs."""

    probe = "proxylogs"
    paths: tuple[str, ...] = ()
    jobs: int = 0
    heartbeat_seconds: int | None = None
    nginx_log_format: tuple[str, ...] = ()


def collect(ctx: ProbeContext, spec: ProxyLogsParams | Mapping[str, Any]) -> tuple[ProbeResult, list[str]]:
    """Run the probe and also return the problems met (bad lines, skipped files)."""
    params = ProxyLogsParams.of(spec)
    if not params.paths:
        return ProbeResult.unavailable("no proxy logs given (--proxy-log PATH)"), []
    custom = logformat.shapes_given(params.nginx_log_format)
    summary, problems = summarise(list(params.paths), params.jobs, custom, ctx.deadline)
    if not summary.figures:
        reason = "; ".join(problems) or "no proxy log records found"
        return ProbeResult((), ProbeStatus.UNAVAILABLE, reason), problems
    facts, excerpts = build_facts(summary, ctx.check, params.heartbeat_seconds or None)
    reason = ""
    if summary.partial:
        reason = (
            f"{summary.bad_lines} line(s) could not be read"
            + (f", {summary.truncated} truncated" if summary.truncated else "")
            + (f", {summary.unreadable} file(s) not read to the end" if summary.unreadable else "")
        )
    status = ProbeStatus.PARTIAL if summary.partial else ProbeStatus.COMPLETE
    return ProbeResult(tuple(facts), status, reason, excerpts), problems


def probe(ctx: ProbeContext, spec: ProxyLogsParams | Mapping[str, Any]) -> ProbeResult:
    result, problems = collect(ctx, spec)
    for problem in problems:
        ctx.warn(problem)
    return result
