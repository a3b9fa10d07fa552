"""The `capture` probe: how each TCP connection in packet captures ended, and who ended it.

Spec keys: `paths` (capture files: pcap, pcapng, NetMon .cap, NetMon text export, any of them
gzip'd), `tmg_addresses` (else inferred), `internal_addresses` (the published
servers; used to name the server leg when no TMG address is known), `samples` (connections kept
per teardown label, default 5), `connections` (true: one fact per connection), `strict` (true: a
file that is missing or not a capture raises `InputError` instead of being reported), `jobs` (worker
processes; default: every CPU for captures of 32 MB or more, else one; the facts are the same),
`log_paths` and `tz` (TMG logs, and their zone for local-time formats: their Status 64 entries are
matched to the captured connections), `match_tolerance` (seconds, default 2), `match_limit`
(entries kept, default 200,000).

Facts: `capture.teardown_summary` for all connections, each leg and each server (with the loss
figures: connections with retransmissions or content gaps, missed bytes), `capture.teardown_loss`
with the same figures per teardown label (all connections and each leg), `capture.connection` for
sample connections of each label and the first connections with a retransmission or gap, and with
`log_paths` `capture.status64_match`: how many Status 64 entries match TMG's dirty closes toward the
server, and how many of the matched connections lost packets before they ended.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diagnose.bounds import input_size, read_error
from diagnose.errors import InputError
from diagnose.facts import Fact, ProbeStatus, make_fact
from diagnose.probes import ProbeContext, ProbeResult
from diagnose.probes.capture.analysis import CaptureAnalysis, analyse
from diagnose.probes.capture.tcp import Connection
from diagnose.probes.params import ProbeParams, split_field

if TYPE_CHECKING:  # imported when logs are given (start-up time of the command)
    from diagnose.probes.capture.match import MatchOutcome, Status64Matcher

PROBE = "capture"


@dataclass(frozen=True)
class CaptureParams(ProbeParams):
    """Parameters of the `capture` probe (see the module docstring)."""

    probe = PROBE
    paths: tuple[str, ...] = ()
    tmg_addresses: tuple[str, ...] = split_field()
    internal_addresses: tuple[str, ...] = split_field()
    samples: int = 5
    connections: bool = False
    strict: bool = False
    jobs: int | None = None
    log_paths: tuple[str, ...] = ()
    tz: str | None = None
    match_tolerance: float | None = None
    match_limit: int | None = None


def probe(ctx: ProbeContext, spec: CaptureParams | Mapping[str, Any]) -> ProbeResult:
    params = CaptureParams.of(spec)
    paths = [Path(p) for p in params.paths]
    if not paths:
        return ProbeResult.unavailable("no capture file given")
    strict = params.strict
    tmg = list(params.tmg_addresses)
    internal = set(params.internal_addresses)
    samples = params.samples
    jobs = params.jobs or None
    problems: list[str] = []
    readable: list[Path] = []
    for path in paths:
        try:
            input_size(path)  # a FIFO or device is refused, not opened
        except (OSError, InputError) as exc:
            why = "not found" if isinstance(exc, FileNotFoundError) else read_error(exc)
            if strict:
                raise InputError("capture file not found" if why == "not found" else why, str(path)) from None
            problems.append(f"{path}: {why}")
            continue
        readable.append(path)
    matcher = _matcher(ctx, params, readable, tmg, internal, problems)
    try:
        analysis = analyse(
            readable,
            tmg,
            samples=samples,
            keep_all=params.connections,
            progress=lambda m: ctx.progress(ctx.check or PROBE, m),
            jobs=jobs,
            matcher=matcher,
            deadline=ctx.deadline,
        )
    except InputError as exc:
        if strict:
            raise
        problems.append(str(exc))
        return ProbeResult((), ProbeStatus.UNAVAILABLE, "; ".join(problems))
    if not tmg and internal:
        # the published servers are known: the side that connects to them is the TMG
        originators = {k.orig_ip for k in analysis.counts if k.resp_ip in internal}
        if originators:
            analysis.tmg, analysis.tmg_inferred = frozenset(originators), True
    facts = build_facts(analysis)
    excerpts = _excerpts(analysis)
    outcome = None
    if matcher is not None:
        outcome = matcher.outcome(analysis)
        fact, cited = match_fact(matcher, analysis, readable, outcome)
        facts.append(fact)
        excerpts.update(cited)
    window = _window(analysis, readable)
    if window and facts and facts[0].subject == "all":
        facts[0] = replace(facts[0], attrs={**facts[0].attrs, **window})
    from diagnose.probes.capture.ladders import ladder_facts

    facts.extend(ladder_facts(analysis, outcome, readable))
    for read in analysis.reads:
        if read.partial:
            problems.append(f"{read.source}@{read.stopped_at}: {read.reason}")
    status = ProbeStatus.PARTIAL if problems else ProbeStatus.COMPLETE
    if not readable:
        status = ProbeStatus.UNAVAILABLE
    return ProbeResult(tuple(facts), status, "; ".join(problems), excerpts=excerpts)


def _matcher(
    ctx: ProbeContext,
    params: CaptureParams,
    readable: list[Path],
    tmg: list[str],
    internal: set[str],
    problems: list[str],
) -> Status64Matcher | None:
    """The Status 64 entries of the logs given (`log_paths`), indexed for matching; None without logs."""
    log_paths = list(params.log_paths)
    if not log_paths or not readable:
        return None
    from diagnose.probes.capture.match import TOLERANCE, Status64Matcher, clock_of
    from diagnose.probes.logs import site_from
    from diagnose.probes.logs.entries import MAX_ENTRIES, status64_entries

    tz = params.tz
    site = site_from(tmg, sorted(internal), tz)
    try:
        found = status64_entries(
            log_paths,
            site,
            params.match_limit or MAX_ENTRIES,
            progress=lambda m: ctx.progress(ctx.check or PROBE, m),
            deadline=ctx.deadline,
        )
    except InputError as exc:
        if params.strict:
            raise
        problems.append(f"Status 64 matching skipped: {exc}")
        return None
    problems.extend(f"Status 64 matching: {p}" for p in found.problems)
    if found.capped:
        problems.append(
            f"Status 64 matching: only the first {found.limit} entries kept, {found.capped} more not matched"
        )
    tolerance = params.match_tolerance if params.match_tolerance is not None else TOLERANCE
    return Status64Matcher(found, [clock_of(p) for p in readable], tz, tolerance)


def match_fact(
    matcher: Status64Matcher, analysis: CaptureAnalysis, readable: list[Path], out: MatchOutcome | None = None
) -> tuple[Fact, dict[str, str]]:
    """The `capture.status64_match` fact and the log lines and frames it cites."""
    from diagnose.probes.capture.match import text_excerpts

    out = out or matcher.outcome(analysis)
    found = matcher.found
    local = (
        []
        if matcher.tz
        else [
            *(p.name for i, p in enumerate(readable) if matcher.clocks[i].kind != "absolute"),
            *(Path(name).name for name in found.local_without_tz),
        ]
    )
    entries = out.entries
    excerpts = found.lines(out.cited_entries)
    excerpts.update(text_excerpts(readable, out.cited_frames))
    fact = make_fact(
        "capture.status64_match",
        "all",
        PROBE,
        source=_names([p.name for p in readable]) + " <-> " + _names([Path(f).name for f in found.files]),
        entries=entries,
        matched=sum(out.matched.values()),
        matched_dirty_close_by_tmg=out.matched["dirty_close_by_tmg"],
        matched_reset_by_server=out.matched["reset_by_server"],
        matched_other=out.matched["other"],
        unmatched=out.unmatched,
        outside_capture=out.outside,
        share_dirty_close_by_tmg=round(out.matched["dirty_close_by_tmg"] / entries, 4) if entries else 0.0,
        share_reset_by_server=round(out.matched["reset_by_server"] / entries, 4) if entries else 0.0,
        match_basis=out.match_basis,
        time_basis=out.time_basis,
        tolerance_seconds=matcher.tolerance,
        status64_logged=found.status64,
        unusable=sum(found.unusable.values()),
        unusable_reasons=[f"{n} {reason}" for reason, n in found.unusable.most_common()],
        capped=found.capped,
        samples=out.samples,
        matched_loss_analysed=out.loss_analysed,
        matched_with_loss_before_end=out.with_loss if out.loss_analysed else None,
        matched_dirty_close_with_loss=out.dirty_close_with_loss if out.loss_analysed else None,
        share_matched_with_loss=round(out.with_loss / out.loss_analysed, 4) if out.loss_analysed else None,
        loss_samples=out.loss_samples,
        local_without_tz=local or None,
        clock_note=clock_note(local),
    )
    return fact, excerpts


def clock_note(local: Sequence[str]) -> str | None:
    """The one line that says logs or captures in local time were matched as if on UTC (no --tz)."""
    if not local:
        return None
    names = ", ".join("".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in name) for name in local)
    return (
        f"logs and capture matched in local time without --tz: {names} read as UTC; "
        "if TMG's clock is not on UTC, run again with --tz ZONE (e.g. --tz Europe/Berlin)"
    )


def connection_fact(analysis: CaptureAnalysis, conn: Connection) -> Fact:
    leg = analysis.leg(conn.orig_ip, conn.resp_ip)
    cited = [f for f in (conn.fin_frame, conn.rst_frame) if f]
    location = f"frames {conn.first_frame}-{conn.last_frame}" + (
        f" (FIN/RST {', '.join(map(str, cited))})" if cited else ""
    )
    return make_fact(
        "capture.connection",
        conn.subject,
        PROBE,
        source=conn.source,
        location=location,
        originator=conn.originator,
        responder=conn.responder,
        conn_state=conn.conn_state,
        history=conn.history,
        teardown=conn.teardown,
        first_fin_by=conn.first_fin_by,
        first_reset_by=conn.first_reset_by,
        fin_by_role=analysis.role(conn.first_fin_by, leg),
        reset_by_role=analysis.role(conn.first_reset_by, leg),
        fin_to_rst_seconds=conn.fin_to_rst_seconds,
        rst_zero_window=conn.rst_zero_window,
        first_frame=conn.first_frame,
        last_frame=conn.last_frame,
        fin_frame=conn.fin_frame,
        rst_frame=conn.rst_frame,
        leg=leg,
        server_port=conn.resp_port,
        bad_checksums=conn.bad_checksums,
        packets=conn.packets_orig + conn.packets_resp,
        loss_analysed=conn.loss_analysed,
        # (the loss figures: no provenance keyword among them)
        **(
            dict(
                retransmissions=conn.retransmissions,
                keepalives=conn.keepalives,
                gaps=conn.gaps,  # type: ignore[arg-type]
                missed_bytes=conn.missed_bytes,
                first_loss_frame=conn.first_loss_frame,
                loss_before_end=conn.loss_before_end,
            )
            if conn.loss_analysed
            else {}
        ),
    )


def build_facts(analysis: CaptureAnalysis) -> list[Fact]:
    facts: list[Fact] = []
    partial = any(r.partial for r in analysis.reads)
    sources = [Path(r.source).name for r in analysis.reads]
    chosen = analysis.chosen_samples()
    tmg = ", ".join(sorted(analysis.tmg)) if analysis.tmg else None
    lossy = analysis.loss_samples
    for subject, (scope, leg, server, counts) in analysis.scopes().items():
        tally = analysis.tally(counts)

        def inside(c: Connection, leg: str | None = leg, server: str | None = server) -> bool:
            return (leg is None or analysis.leg(c.orig_ip, c.resp_ip) == leg) and (
                server is None or c.responder == server
            )

        cites = [
            f"{label}: {c.source} frames {c.first_frame}-{c.last_frame}"
            for label, conns in chosen.items()
            for c in conns
            if inside(c)
        ]
        loss_cites = [_loss_cite(c) for c in lossy if inside(c)]
        extra: dict[str, Any] = {}
        if scope == "all":
            extra = dict(
                packets=sum(r.frames for r in analysis.reads),
                tcp_packets=analysis.tcp_packets,
                formats=sorted({r.format for r in analysis.reads if r.format}),
                stopped_at=[f"{Path(r.source).name}@{r.stopped_at}: {r.reason}" for r in analysis.reads if r.partial],
            )
        facts.append(
            make_fact(
                "capture.teardown_summary",
                subject,
                PROBE,
                source=", ".join(sources) or None,
                scope=scope,
                leg=leg,
                server=server,
                address=_address_of(server) if scope == "server" else None,
                tmg=tmg,
                tmg_inferred=analysis.tmg_inferred if tmg else None,
                partial=partial,
                samples=cites[:40],
                loss_samples=loss_cites,
                **tally,
                **extra,
            )
        )
        if scope == "server":
            continue
        for label, figures in analysis.loss_by_teardown(counts).items():
            facts.append(
                make_fact(
                    "capture.teardown_loss",
                    f"{subject}/{label}",
                    PROBE,
                    source=", ".join(sources) or None,
                    scope=scope,
                    leg=leg,
                    teardown=label,
                    partial=partial,
                    loss_samples=[_loss_cite(c) for c in lossy if inside(c) and c.teardown == label],
                    **figures,
                )
            )
    if analysis.all_connections is not None:
        conns = analysis.all_connections
    else:
        conns = [c for cs in chosen.values() for c in cs]
        kept = {(c.source, c.first_frame, c.originator) for c in conns}
        conns += [c for c in lossy if (c.source, c.first_frame, c.originator) not in kept]
    facts.extend(connection_fact(analysis, c) for c in conns)
    return facts


def _address_of(server: str | None) -> str | None:
    """The ip of a server scope's "ip:port" ("[ip6]:port"), which rules join to a resolved dns.address."""
    return server.rsplit(":", 1)[0].strip("[]") if server else None


def _loss_cite(c: Connection) -> str:
    """A connection with a retransmission or content gap, cited."""
    what = []
    if c.retransmissions:
        what.append(f"{c.retransmissions} retransmission{'s' if c.retransmissions > 1 else ''}")
    if c.gaps:
        what.append(f"{c.gaps} gap{'s' if c.gaps > 1 else ''} ({c.missed_bytes} bytes missed)")
    return (
        f"{c.teardown} {c.subject}: {', '.join(what)}, first at frame {c.first_loss_frame}"
        f"{' (before the end)' if c.loss_before_end else ''}: {c.source} frames {c.first_frame}-{c.last_frame}"
    )


def _excerpts(analysis: CaptureAnalysis) -> dict[str, str]:
    """The raw lines of cited frames in NetMon text exports (`file:line` -> text)."""
    out: dict[str, str] = {}
    wanted: dict[str, set[int]] = {}
    for conns in analysis.chosen_samples().values():
        for c in conns:
            wanted.setdefault(c.source, set()).update(
                f for f in (c.first_frame, c.fin_frame, c.rst_frame, c.last_frame) if f
            )
    for read in analysis.reads:
        if read.format != "netmon text" or read.compressed:
            continue
        frames = wanted.get(Path(read.source).name)
        if not frames:
            continue
        from diagnose.probes.capture.netmon_text import frame_lines

        for lineno, number, text in frame_lines(Path(read.source)):
            if number in frames:
                out[f"{Path(read.source).name}:{lineno}"] = text
    return out


def _window(analysis: CaptureAnalysis, readable: list[Path]) -> dict[str, str]:
    """The capture window (`first_time`, `last_time`, `time_basis`) over the files read: UTC times
    for files with an absolute clock, else the files' own clock (local time, or the time of day of a
    NetMon text export); nothing when the files' clocks differ in kind or tell no time."""
    from diagnose.probes.capture.ladders import clock_text

    firsts, lasts, bases = [], [], set()
    by_name = {p.name: p for p in readable}
    for index, (t0, tl) in sorted(analysis.s64_spans.items()):
        path = by_name.get(analysis.sources[index]) if index < len(analysis.sources) else None
        if path is None:
            continue
        first, basis = clock_text(path, t0)
        last, _basis = clock_text(path, tl)
        if not first or not last:
            return {}
        firsts.append(first)
        lasts.append(last)
        bases.add(basis)
    if len(bases) != 1:
        return {}
    return {"first_time": min(firsts), "last_time": max(lasts), "time_basis": bases.pop()}


def _names(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "") or "-"
