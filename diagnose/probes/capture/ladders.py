"""The `capture.packets` facts: the packets of the few connections a report draws as ladders.

Chosen, at most `packets.MAX_LADDERS` of them, to show the evidence: first the connections matched
to Status 64 entries (two per match class: a dirty close by TMG, a reset by the server, any other),
then one sample of each abrupt ending (a dirty close, a reset, a refused or unanswered SYN; the
server leg first), the first connections that lost packets (a retransmission run), and one sample
of each other teardown label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from diagnose.errors import DiagnoseError
from diagnose.facts import Fact, make_fact
from diagnose.probes.capture.analysis import CaptureAnalysis
from diagnose.probes.capture.packets import MAX_LADDERS, Recording, Wanted, record
from diagnose.probes.capture.tcp import Connection

if TYPE_CHECKING:
    from diagnose.probes.capture.match import MatchOutcome

PROBE = "capture"
LABEL_ORDER = (
    "dirty-close",
    "reset",
    "refused",
    "unanswered",
    "reset-after-own-fin",
    "half-closed",
    "graceful",
    "open",
)
ABRUPT = 4  # the labels before this index in LABEL_ORDER end abruptly
PER_CLASS = 2
DESCRIBED = {
    "dirty_close_by_tmg": "dirty close by TMG",
    "reset_by_server": "reset by the server",
    "other": "other teardown",
}


@dataclass
class _Choice:
    wanted: Wanted
    originator: str
    responder: str
    teardown: str
    why: str
    status64: list[str] = field(default_factory=list)
    log_endpoints: tuple[str, str] | None = None  # (source, destination) as the matched entry logs them


def _ip(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[0].strip("[]")


def _port(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[-1]


def choose(analysis: CaptureAnalysis, outcome: MatchOutcome | None) -> list[_Choice]:
    chosen: dict[tuple[str, int], _Choice] = {}
    per_class: dict[str, int] = {}
    for source, first, last, kind, cite, e_src, e_dst, orig, resp, label in (
        outcome.cited_connections if outcome is not None else ()
    ):
        key = (source, first)
        have = chosen.get(key)
        if have is not None:
            if cite not in have.status64:
                have.status64.append(cite)
            continue
        if per_class.get(kind, 0) >= PER_CLASS or len(chosen) >= MAX_LADDERS:
            continue
        per_class[kind] = per_class.get(kind, 0) + 1
        chosen[key] = _Choice(
            Wanted(source, first, last),
            orig,
            resp,
            label,
            f"matched to Status 64 ({DESCRIBED.get(kind, kind)})",
            [cite],
            (e_src, e_dst),
        )
    samples = analysis.chosen_samples()
    rank = {"server": 0, "client": 1, "unknown": 2}
    for label in LABEL_ORDER:
        if label == LABEL_ORDER[ABRUPT]:  # the abrupt endings first, then a retransmission run
            for conn in analysis.loss_samples[:2]:
                _add(chosen, conn, "retransmission or gap")
        conns = sorted(samples.get(label, ()), key=lambda c: rank[analysis.leg(c.orig_ip, c.resp_ip)])
        if conns and not any(ch.teardown == label for ch in chosen.values()):
            _add(chosen, conns[0], f"sample {label}")
    return list(chosen.values())


def _add(chosen: dict[tuple[str, int], _Choice], conn: Connection, why: str) -> None:
    key = (conn.source, conn.first_frame)
    if key in chosen or len(chosen) >= MAX_LADDERS:
        return
    loss = conn.first_loss_frame if conn.loss_analysed else None
    chosen[key] = _Choice(
        Wanted(conn.source, conn.first_frame, conn.last_frame, loss),
        conn.originator,
        conn.responder,
        conn.teardown,
        why,
    )


def ladder_facts(analysis: CaptureAnalysis, outcome: MatchOutcome | None, readable: list[Path]) -> list[Fact]:
    chosen = choose(analysis, outcome)
    if not chosen:
        return []
    try:
        recordings = record(readable, [ch.wanted for ch in chosen])
    except (DiagnoseError, OSError):  # the file changed or went since the first read: no ladders, no more
        return []
    paths = {p.name: p for p in readable}
    facts = []
    for ch in chosen:
        rec = recordings.get((ch.wanted.source, ch.wanted.first_frame))
        if rec is not None and rec.packets:
            facts.append(_fact(analysis, ch, rec, paths.get(ch.wanted.source)))
    return facts


def _fact(analysis: CaptureAnalysis, ch: _Choice, rec: Recording, path: Path | None) -> Fact:
    leg = analysis.leg(_ip(ch.originator), _ip(ch.responder))
    frames = []
    for p in rec.packets:
        way = ">" if p.sender == ch.originator else "<"
        win = "-" if p.window is None else str(p.window)
        frames.append(
            f"{p.frame} {p.time:.6f} {way} {p.flag_text()} {win} {p.length} {p.seq} {p.ack}"
            + (" bad-checksum" if p.bad_checksum else "")
        )
    log_orig = log_resp = None
    if ch.log_endpoints is not None:
        src, dst = ch.log_endpoints
        log_orig, log_resp = (src, dst) if _port(src) == _port(ch.originator) else (dst, src)
    start, basis = clock_text(path, rec.start) if path is not None else ("", "")
    w = ch.wanted
    return make_fact(
        "capture.packets",
        f"{ch.originator}>{ch.responder}",
        PROBE,
        source=w.source,
        location=f"frames {w.first_frame}-{w.last_frame}",
        originator=ch.originator,
        responder=ch.responder,
        leg=leg,
        teardown=ch.teardown,
        originator_role=analysis.role("originator", leg),
        responder_role=analysis.role("responder", leg),
        first_frame=w.first_frame,
        last_frame=w.last_frame,
        packets=rec.seen,
        omitted=rec.omitted,
        frames=frames,
        cut_after=[str(f) for f in rec.after],
        chosen_for=ch.why,
        status64=ch.status64 or None,
        log_originator=log_orig,
        log_responder=log_resp,
        start_time=start or None,
        time_basis=basis or None,
    )


def clock_text(path: Path, ts: float) -> tuple[str, str]:
    """(a capture time as text, its basis): UTC ISO 8601 for a file with an absolute clock, the local
    time for NetMon 2.0-2.2, the time of day for a NetMon text export (empty when it tells none)."""
    try:
        stat = path.stat()
    except OSError:
        return "", ""
    kind, base = _clock(str(path), stat.st_mtime_ns, stat.st_size)
    if kind == "text":
        if base is None:
            return "", ""
        micros = round((ts + base) * 1e6) % 86_400_000_000
        whole, frac = divmod(micros, 1_000_000)
        return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}.{frac:06d}", "time of day"
    try:
        when = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    except (OverflowError, OSError, ValueError):
        return "", ""
    return (when + "Z", "absolute") if kind == "absolute" else (when, "local clock")


@lru_cache(maxsize=64)
def _clock(path: str, _mtime: int, _size: int) -> tuple[str, float | None]:
    """The clock of a capture file (cached per file version: a text export is read whole for it)."""
    from diagnose.probes.capture.match import clock_of

    clock = clock_of(Path(path))
    return clock.kind, clock.tod_base
