"""Status 64 log entries matched to the captured connections they were logged for.

This is what the expert did in the original case: take a logged "Failed Connection Attempt,
Status 64" from 10.1.4.98:31024 to 10.1.5.11:443 at 11:34:15 and find its packets in the trace
(frames 1348-1410: the server's FIN, TMG's ACK and TMG's RST). Done for every entry, it tells whether
the Status 64 entries are TMG's own dirty closes (benign) or something else (the server resetting,
connections that never appear).

Matching. An entry matches a connection with the same two endpoints, in either orientation (on the
server leg the log's source is TMG), whose lifetime, from its first to its last SYN/FIN/RST packet,
widened by `tolerance` seconds (TMG logs whole seconds; 2 s by default), holds the entry's time. A
connection still open at the end of its capture has no end. When several connections match, the one
that ended closest to the entry's time wins.

Clocks. pcap, pcapng and NetMon 2.3 (per-frame UTC FILETIME) carry UTC: compared with the entry as
is. NetMon 2.0-2.2 carry the capturing host's local time: the entry is shifted into `--tz` (taken as
UTC without it). A NetMon text export has only a time of day, no date, in the capturing host's local
time, and usually no address columns: there connections are matched by ports (and protocol; it
holds TCP only), and the time of day is used when it fits - when log entries, read in UTC or in
`--tz`, fall inside the export's time-of-day span; otherwise by ports alone (`time_basis: none`).
Without a date, entries of other days at the same time of day would fit too: give the logs of the
capture's day.

Memory. The entries are indexed by key in a dict; each connection is checked once, when the tracker
finishes it (`CaptureAnalysis.add`), and only the best candidate per entry is kept, in
`CaptureAnalysis.s64_candidates` (a list as long as the matched entries at most; lists from several
workers concatenate, and `outcome` picks the best per entry). Capture spans per source are kept in
`CaptureAnalysis.s64_spans` (merge: min of the first, max of the last).

Entries considered: those matched, and those whose time falls inside a capture's span (widened by
the tolerance); entries from hours the captures do not cover say nothing and are counted apart
(`outside_capture`).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diagnose.bounds import MAX_TEXT_CAPTURE_BYTES, READ_ERRORS, open_input, open_regular
from diagnose.compat import UTC, ZoneInfo
from diagnose.probes.capture.tcp import (
    C_CLOSED,
    C_FIN0,
    C_FIN1,
    C_FIRST,
    C_KEY,
    C_LAST,
    C_RST0,
    C_RST1,
    C_SRC,
    C_T0,
    C_TL,
    endpoints_of,
    loss_of,
    teardown_of,
)

if TYPE_CHECKING:
    from diagnose.probes.capture.analysis import CaptureAnalysis
    from diagnose.probes.logs.entries import Status64Entries, Status64Entry

TOLERANCE = 2.0
_CAPTURE_MAGICS = (
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\xc3\xd4",
    b"\x4d\x3c\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
    b"\x0a\x0d\x0d\x0a",
)  # pcap (us, ns; both byte orders), pcapng
DAY = 86400.0
NO_TIME = 1e12  # distance of a match made without time

ABSOLUTE, LOCAL, TIME_OF_DAY, NONE = "absolute", "local clock", "time of day", "none"
_TIME_RANK = {ABSOLUTE: 0, LOCAL: 1, TIME_OF_DAY: 2, NONE: 3}
FOUR_TUPLE, PORTS = "4-tuple", "ports"
CLASSES = ("dirty_close_by_tmg", "reset_by_server", "other")
SAMPLES = {"dirty_close_by_tmg": 4, "reset_by_server": 4, "other": 2, "unmatched": 2, "loss": 4}


@dataclass
class SourceClock:
    """How a capture file tells time: `kind` absolute | local | text; for a text export the time of
    day of its frames is `ts + tod_base` (None: the export has no time of day) and `span` is the
    (first, last) `ts` of its frames."""

    kind: str
    tod_base: float | None = None
    span: tuple[float, float] | None = None
    zone: str = "UTC"  # the zone entries are read in for a text export (chosen by fit)
    fits: bool = False  # text export: the entries' times of day fall inside its span


def clock_of(path: Path) -> SourceClock:
    """The clock of a capture file, from its first bytes (and, for a text export, its frame lines)."""
    try:
        with open_input(path) as stream:  # gunzipped on the fly, bounded
            first = stream.read(8)
            if first[:4] in _CAPTURE_MAGICS:
                return SourceClock("absolute")
            if first[:4] == b"GMBU":
                return SourceClock("absolute" if len(first) > 4 and first[4] >= 3 else "local")
            if first[:4] == b"RTSS":
                return SourceClock("local")
            return _text_clock(first + stream.read(MAX_TEXT_CAPTURE_BYTES))
    except READ_ERRORS:
        return SourceClock("absolute")


def _text_clock(raw: bytes) -> SourceClock:
    from diagnose.probes.capture import netmon_text as nt

    text = nt._decode(raw)
    base: float | None = None
    tod_only = True
    lo = hi = None
    for line in text.splitlines():
        m = nt._FRAME.match(line)
        if not m:
            continue
        rest = m.group(2)
        if not (nt._CONV.search(rest) or nt._TCP.search(rest)):
            continue
        tod = offset = None
        for tok in nt.re.split(r"[\t ]+", rest.strip(), maxsplit=3)[:3]:
            if offset is None and nt._OFFSET.match(tok):
                offset = float(tok)
            t = nt._TIME_OF_DAY.match(tok)
            if t and tod is None:
                tod = int(t.group(1)) * 3600 + int(t.group(2)) * 60 + float(t.group(3))
        ts = nt._time_of(rest)
        lo = ts if lo is None else min(lo, ts)
        hi = ts if hi is None else max(hi, ts)
        if offset is not None:
            tod_only = False
            if base is None and tod is not None:
                base = tod - offset
        elif tod is None:
            tod_only = False
    if base is None and tod_only and lo is not None:
        base = 0.0  # the tracker's times are the times of day themselves
    return SourceClock("text", base, (lo, hi) if lo is not None and hi is not None else None)


def _tod_delta(a: float, b: float) -> float:
    """a - b on the 24-hour circle, in (-12 h, 12 h]."""
    d = (a - b) % DAY
    return d - DAY if d > DAY / 2 else d


@dataclass
class MatchOutcome:
    entries: int = 0
    matched: dict[str, int] = field(default_factory=dict)  # class -> entries
    unmatched: int = 0
    outside: int = 0
    match_basis: str = FOUR_TUPLE
    time_basis: str = ABSOLUTE
    samples: list[str] = field(default_factory=list)
    loss_analysed: int = 0  # matched entries whose connection's sequence numbers were analysed
    with_loss: int = 0  # ... that lost packets before the connection's first RST (any, without one)
    dirty_close_with_loss: int = 0
    loss_samples: list[str] = field(default_factory=list)
    cited_entries: list[Any] = field(default_factory=list)
    cited_frames: dict[str, set[int]] = field(default_factory=dict)
    # the matched connections cited: (file, first frame, last frame, class, entry cite, entry source, entry
    # destination, originator, responder, teardown), for the ladder diagrams (ladders.py)
    cited_connections: list[tuple[str, int, int, str, str, str, str, str, str, str]] = field(default_factory=list)


class Status64Matcher:
    """Entries indexed by key; `see(c, analysis)` checks one finished connection against them."""

    def __init__(
        self, found: Status64Entries, clocks: Sequence[SourceClock], tz: str | None = None, tolerance: float = TOLERANCE
    ) -> None:
        self.found = found
        self.entries = found.entries
        self.clocks = list(clocks)
        self.zone = ZoneInfo(tz) if tz else None
        self.tz = tz
        self.tolerance = float(tolerance)
        self.by_key: dict[bytes, Any] = {}  # canonical packed 4-tuple -> id << 1 | forward, or a list
        self.by_text: dict[tuple, Any] = {}  # canonical (ip, port, ip, port) -> same
        self.by_ports: dict[tuple[int, int], Any] = {}
        self.best: dict[int, int] = {}  # entry id -> index into analysis.s64_candidates
        texts = any(c.kind == "text" for c in self.clocks)  # text exports are keyed by text, or ports
        for eid, e in enumerate(self.entries):
            if e.src_ip and e.dst_ip:
                packed = _pack(e.src_ip, e.src_port, e.dst_ip, e.dst_port)
                if packed is not None:
                    fwd, rev = packed
                    _put(self.by_key, min(fwd, rev), eid << 1 | (fwd <= rev))
                if texts:
                    a, b = (e.src_ip, e.src_port), (e.dst_ip, e.dst_port)
                    _put(self.by_text, (a + b) if a <= b else (b + a), eid << 1 | (a <= b))
            if texts:
                p, q = e.src_port, e.dst_port
                _put(self.by_ports, (p, q) if p <= q else (q, p), eid << 1 | (p <= q))
        for clock in self.clocks:
            if clock.kind == "text":
                self._fit(clock)

    # -- times ------------------------------------------------------------------------------------
    def _shifted(self, utc: float, zone: ZoneInfo | None) -> float:
        """UTC epoch seconds read on a clock that shows `zone`'s local time."""
        if zone is None:
            return utc
        offset = datetime.fromtimestamp(utc, UTC).astimezone(zone).utcoffset()
        return utc + (offset.total_seconds() if offset else 0.0)

    def _fit(self, clock: SourceClock) -> None:
        """Choose the zone that puts the most entries inside a text export's time-of-day span."""
        if clock.tod_base is None or clock.span is None or not self.entries:
            return
        start = clock.span[0] + clock.tod_base
        length = clock.span[1] - clock.span[0]
        best = (0, "UTC")
        zones: list[tuple[str, ZoneInfo | None]] = [("UTC", None)]
        if self.zone is not None:
            zones.insert(0, (str(self.tz), self.zone))
        for name, zone in zones:
            fits = 0
            for e in self.entries:
                d = _tod_delta(self._shifted(e.time, zone), start)
                if -self.tolerance <= d <= length + self.tolerance:
                    fits += 1
            if fits > best[0]:
                best = (fits, name)
        if best[0]:
            clock.fits, clock.zone = True, best[1]

    def entry_time(self, e: Status64Entry, clock: SourceClock) -> float | None:
        """The entry's time on a source's clock; None when that clock cannot be compared."""
        if clock.kind == "absolute":
            return e.time
        if clock.kind == "local":
            return self._shifted(e.time, self.zone)
        if not clock.fits:
            return None
        zone = self.zone if clock.zone != "UTC" else None
        return self._shifted(e.time, zone) % DAY

    def time_basis(self, clock: SourceClock) -> str:
        if clock.kind == "absolute":
            return ABSOLUTE
        if clock.kind == "local":
            return LOCAL
        return TIME_OF_DAY if clock.fits else NONE

    def _inside(self, t: float, clock: SourceClock, start: float, end: float | None) -> tuple[bool, float]:
        """(inside [start - tol, end + tol], distance from the end) on a clock; end None = open."""
        tol = self.tolerance
        if clock.kind == "text":
            base = clock.tod_base or 0.0
            d = _tod_delta(t, start + base)
            length = None if end is None else end - start
            ok = d >= -tol and (length is None or d <= length + tol)
            return ok, (0.0 if length is None else abs(d - length))
        ok = t >= start - tol and (end is None or t <= end + tol)
        return ok, (0.0 if end is None else abs(t - end))

    # -- the hook -----------------------------------------------------------------------------------
    def see(self, c: list, analysis: CaptureAnalysis) -> None:
        """One finished connection (the tracker's state list)."""
        src = c[C_SRC]
        t0, tl = c[C_T0], c[C_TL]  # (the span of the source: CaptureAnalysis.add)
        key = c[C_KEY]
        basis = 0
        if isinstance(key, bytes):
            n = (len(key) - 4) >> 1
            rev = key[n : 2 * n] + key[:n] + key[2 * n + 2 :] + key[2 * n : 2 * n + 2]
            forward = key <= rev
            hit = self.by_key.get(key if forward else rev)
        else:
            s_ip, d_ip, sport, dport, _conv = key.split("|")
            a, b = int(sport), int(dport)
            if s_ip == "?" or d_ip == "?":
                analysis.s64_port_only.add(src)
                basis = 1
                forward = a <= b
                hit = self.by_ports.get((a, b) if forward else (b, a))
            else:
                ea, eb = (s_ip, a), (d_ip, b)
                forward = ea <= eb
                hit = self.by_text.get((ea + eb) if forward else (eb + ea))
        if hit is None:
            return
        clock = self.clocks[src] if src < len(self.clocks) else SourceClock("absolute")
        end = tl if c[C_CLOSED] is not None else None
        for packed_id in hit if isinstance(hit, list) else (hit,):
            eid, entry_forward = packed_id >> 1, bool(packed_id & 1)
            e = self.entries[eid]
            t = self.entry_time(e, clock)
            if t is None:
                distance = NO_TIME
            else:
                ok, distance = self._inside(t, clock, t0, end)
                if not ok:
                    continue
            rank = (basis, distance)
            at = self.best.get(eid)
            if at is not None and analysis.s64_candidates[at][1:3] <= rank:
                continue
            cand = self._candidate(eid, basis, distance, c, analysis, entry_forward == forward)
            if at is None:
                self.best[eid] = len(analysis.s64_candidates)
                analysis.s64_candidates.append(cand)
            else:
                analysis.s64_candidates[at] = cand

    def _candidate(
        self, eid: int, basis: int, distance: float, c: list, analysis: CaptureAnalysis, entry_is_originator: bool
    ) -> tuple:
        label, fin_by, rst_by, _gap = teardown_of(c)
        orig, resp, orig_ip, resp_ip, _port = endpoints_of(c[C_KEY])
        fin = min(f for f in (c[C_FIN0], c[C_FIN1]) if f) if c[C_FIN0] or c[C_FIN1] else 0
        rst = min(f for f in (c[C_RST0], c[C_RST1]) if f) if c[C_RST0] or c[C_RST1] else 0
        loss = loss_of(c)
        first = loss["first_loss_frame"]
        # (analysed, retransmissions, gaps, missed bytes, lost packets before the first RST)
        lost = (
            loss["loss_analysed"],
            loss["retransmissions"],
            loss["gaps"],
            loss["missed_bytes"],
            first is not None and (not rst or first < rst),
        )
        return (
            eid,
            basis,
            distance,
            c[C_SRC],
            analysis.sources[c[C_SRC]],
            c[C_FIRST],
            c[C_LAST],
            label,
            fin_by,
            rst_by,
            orig_ip,
            resp_ip,
            "originator" if entry_is_originator else "responder",
            fin,
            rst,
            lost,
            orig,
            resp,
        )

    # -- the outcome --------------------------------------------------------------------------------
    def outcome(self, analysis: CaptureAnalysis) -> MatchOutcome:
        best: dict[int, tuple] = {}
        cand: tuple | None
        for cand in analysis.s64_candidates:
            have = best.get(cand[0])
            if have is None or cand[1:3] < have[1:3]:
                best[cand[0]] = cand
        out = MatchOutcome(matched={k: 0 for k in CLASSES})
        picked: dict[str, list[tuple[Status64Entry, tuple | None]]] = {k: [] for k in (*CLASSES, "unmatched")}
        used_time: set[str] = set()
        used_ports = False
        sources = [i for i in range(len(self.clocks)) if i in analysis.s64_spans]
        untimed = any(self.time_basis(self.clocks[i]) == NONE for i in sources)
        for eid, e in enumerate(self.entries):
            cand = best.get(eid)
            if cand is not None:
                kind = classify(e, cand, analysis)
                out.matched[kind] += 1
                analysed, _rx, _gaps, _missed, before_end = cand[15]
                if analysed:
                    out.loss_analysed += 1
                    if before_end:
                        out.with_loss += 1
                        out.dirty_close_with_loss += kind == "dirty_close_by_tmg"
                        if len(out.loss_samples) < SAMPLES["loss"]:
                            out.loss_samples.append(self._cite(e, cand, kind))
                used_ports |= cand[1] == 1
                used_time.add(self.time_basis(self.clocks[cand[3]]) if cand[3] < len(self.clocks) else ABSOLUTE)
                if len(picked[kind]) < SAMPLES[kind]:
                    picked[kind].append((e, cand))
                continue
            if untimed or any(self._in_span(e, i, analysis) for i in sources):
                out.unmatched += 1
                if len(picked["unmatched"]) < SAMPLES["unmatched"]:
                    picked["unmatched"].append((e, None))
            else:
                out.outside += 1
        out.entries = sum(out.matched.values()) + out.unmatched
        if used_ports or (not best and sources and all(i in analysis.s64_port_only for i in sources)):
            out.match_basis = PORTS
        bases = used_time or {self.time_basis(self.clocks[i]) for i in sources} or {ABSOLUTE}
        out.time_basis = max(bases, key=_TIME_RANK.__getitem__)
        for kind in (*CLASSES, "unmatched"):
            for e, cand in picked[kind]:
                out.samples.append(self._cite(e, cand, kind))
                out.cited_entries.append(e)
                if cand is not None:
                    frames = out.cited_frames.setdefault(cand[4], set())
                    frames.update(f for f in (cand[5], cand[13], cand[14], cand[6]) if f)
                    out.cited_connections.append(
                        (
                            cand[4],
                            cand[5],
                            cand[6],
                            kind,
                            self.found.cite(e),
                            e.source,
                            e.destination,
                            cand[16],
                            cand[17],
                            cand[7],
                        )
                    )
        return out

    def _in_span(self, e: Status64Entry, src: int, analysis: CaptureAnalysis) -> bool:
        clock = self.clocks[src]
        t = self.entry_time(e, clock)
        if t is None:
            return True
        if clock.kind == "text" and clock.span is not None:
            return self._inside(t, clock, clock.span[0], clock.span[1])[0]
        first, last = analysis.s64_spans[src]
        return self._inside(t, clock, first, last)[0]

    def _cite(self, e: Status64Entry, cand: tuple | None, kind: str) -> str:
        where = self.found.cite(e)
        when = datetime.fromtimestamp(e.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        what = f"{where} ({e.source} > {e.destination} at {when})"
        if cand is None:
            return f"{what} <-> no connection"
        described = {"dirty_close_by_tmg": "dirty close by TMG", "reset_by_server": "reset by the server"}
        label = described.get(kind, f"{cand[7]}, first RST by {cand[9]}" if cand[9] != "none" else cand[7])
        analysed, rx, gaps, missed, before_end = cand[15]
        lost = []
        if analysed and rx:
            lost.append(f"{rx} retransmission{'s' if rx > 1 else ''}")
        if analysed and gaps:
            lost.append(f"{gaps} gap{'s' if gaps > 1 else ''} ({missed} bytes missed)")
        if lost:
            label += "; " + ", ".join(lost) + (" before the end" if before_end else "")
        return f"{what} <-> {cand[4]} frames {cand[5]}-{cand[6]} ({label})"


def classify(e: Status64Entry, cand: tuple, analysis: CaptureAnalysis) -> str:
    """dirty_close_by_tmg | reset_by_server | other, for an entry and its matched connection."""
    teardown, fin_by, rst_by, orig_ip, resp_ip, entry_side = cand[7], cand[8], cand[9], cand[10], cand[11], cand[12]
    other = {"originator": "responder", "responder": "originator"}
    # the capture's side of TMG (given, else inferred) when it has addresses; for a port-only match
    # (or when the capture cannot tell) the log's: on the server leg TMG is the entry's source
    leg = analysis.leg(orig_ip, resp_ip) if orig_ip != "?" else "unknown"
    tmg_side: str | None = None
    if leg == "server":
        tmg_side = "originator"
    elif leg == "unknown" and e.leg == "server":
        tmg_side = entry_side
    if tmg_side is None:
        return "other"
    server_side = other[tmg_side]
    if teardown == "dirty-close" and rst_by == tmg_side and fin_by == server_side:
        return "dirty_close_by_tmg"
    if rst_by == server_side:
        return "reset_by_server"
    return "other"


def _put(index: dict, key: Any, value: int) -> None:
    """value: entry id << 1 | (the key is in the entry's source-to-destination order)."""
    have = index.get(key)
    if have is None:
        index[key] = value
    elif isinstance(have, list):
        have.append(value)
    else:
        index[key] = [have, value]


def _pack(src: str, sport: int, dst: str, dport: int) -> tuple[bytes, bytes] | None:
    """The entry as the tracker keys connections: src + dst + sport + dport, and reversed."""
    try:
        family = socket.AF_INET6 if ":" in src else socket.AF_INET
        a = socket.inet_pton(family, src)
        b = socket.inet_pton(socket.AF_INET6 if ":" in dst else socket.AF_INET, dst)
    except OSError:
        return None
    if len(a) != len(b):
        return None
    p, q = sport.to_bytes(2, "big"), dport.to_bytes(2, "big")
    return a + b + p + q, b + a + q + p


def text_excerpts(paths: Iterable[Path], frames: dict[str, set[int]]) -> dict[str, str]:
    """Frame lines of uncompressed NetMon text exports (`file:line` -> text) for cited frames."""
    from diagnose.probes.capture.netmon_text import frame_lines

    out: dict[str, str] = {}
    for path in paths:
        wanted = frames.get(path.name)
        if not wanted:
            continue
        if _binary_or_compressed(path):
            continue
        for lineno, number, text in frame_lines(path):
            if number in wanted:
                out[f"{path.name}:{lineno}"] = text
    return out


def _binary_or_compressed(path: Path) -> bool:
    """True for binary captures (their frames have no text to cite) and gzip'd files."""
    with open_regular(path) as fh:
        head = fh.read(4)
    return head[:2] == b"\x1f\x8b" or head in (*_CAPTURE_MAGICS, b"GMBU", b"RTSS")
