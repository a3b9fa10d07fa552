"""Pictures of the evidence: packet ladders, the Status 64 timeline, the evidence as it was read.

Everything here is drawn from the facts of a diagnosis (`capture.packets`, `log.status_summary`,
`capture.teardown_summary`) and the bundle's excerpts: as inline SVG for the HTML report (no script,
no external reference, every text escaped) and as text for the terminal.
"""

from __future__ import annotations

import re
from calendar import timegm
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from time import strptime
from typing import Any

from diagnose.diagnosis import CauseFinding, Diagnosis
from diagnose.facts import Fact
from diagnose.safetext import neutralise

MAX_LADDERS_PER_CAUSE = 3
MAX_EXCERPTS_PER_FACT = 40
MIN_BUCKETS = {60: 30, 3600: 24}  # the timeline's axis spans at least this many buckets
MAX_BUCKETS = 2000
_FRAMES = re.compile(r"(\S+) frames (\d+)-(\d+)")


def _int(value: Any) -> int:
    """A count or frame number of a fact's attributes (absent, None or "" is 0)."""
    return int(value or 0)


def _items(value: Any) -> tuple[Any, ...]:
    """A list attribute of a fact (absent or None is empty)."""
    return tuple(value or ())


def clean(text: object) -> str:
    """Text for a report: control and bidi characters shown escaped (one rule for every report)."""
    return neutralise(str(text), keep="\t\n")


def esc(text: object) -> str:
    return escape(clean(text))


# ----------------------------------------------------------------------------------- ladders
@dataclass(frozen=True)
class Row:
    frame: int
    time: float
    forward: bool  # originator -> responder
    flags: str
    window: str
    length: int
    bad_checksum: bool
    cut_after: bool


@dataclass(frozen=True)
class Ladder:
    index: int  # the fact's index in the diagnosis
    source: str
    first_frame: int
    last_frame: int
    left: str  # "TMG 10.1.4.98:31024": role and address of the originator
    right: str
    teardown: str
    chosen_for: str
    rows: tuple[Row, ...]
    omitted: int
    status64: tuple[str, ...]
    start_time: str

    @property
    def anchor(self) -> str:
        return f"ladder-{self.index}"

    @property
    def title(self) -> str:
        return f"{self.source} frames {self.first_frame}-{self.last_frame}: {self.teardown}"


_ROLE = {"tmg": "TMG", "server": "server", "client": "client"}


def ladder_of(index: int, fact: Fact) -> Ladder | None:
    """The ladder of a `capture.packets` fact (None when its frames cannot be read)."""
    a = fact.attrs
    rows = []
    cuts = set(a.get("cut_after", ()) or ())  # type: ignore[arg-type]
    for line in a.get("frames", ()) or ():  # type: ignore[union-attr]
        parts = str(line).split()
        if len(parts) < 8 or parts[2] not in ("<", ">"):
            return None
        try:
            rows.append(
                Row(
                    int(parts[0]),
                    float(parts[1]),
                    parts[2] == ">",
                    parts[3],
                    parts[4],
                    int(parts[5]),
                    "bad-checksum" in parts[8:],
                    parts[0] in cuts,
                )
            )
        except ValueError:
            return None
    if not rows:
        return None

    def side(which: str) -> str:
        address = str(a.get(which, "?"))
        logged = a.get(f"log_{which}")
        if address.startswith("?") and logged:
            address = str(logged)
        return f"{_ROLE.get(str(a.get(f'{which}_role', '')), which)} {address}"

    return Ladder(
        index,
        fact.provenance.source or "",
        _int(a.get("first_frame")),
        _int(a.get("last_frame")),
        side("originator"),
        side("responder"),
        str(a.get("teardown", "")),
        str(a.get("chosen_for", "")),
        tuple(rows),
        _int(a.get("omitted")),
        tuple(str(s) for s in _items(a.get("status64"))),
        str(a.get("start_time", "")),
    )


def ladders(d: Diagnosis) -> list[Ladder]:
    out = []
    for i, f in enumerate(d.facts):
        if f.kind == "capture.packets":
            lad = ladder_of(i, f)
            if lad is not None:
                out.append(lad)
    return out


def ladders_for(d: Diagnosis, c: CauseFinding, every: Sequence[Ladder] | None = None) -> list[Ladder]:
    """The ladders that show a cause's evidence: the connections its explanations cite ("FILE frames
    A-B"), then those cited by the capture facts it rests on; at most MAX_LADDERS_PER_CAUSE."""
    every = ladders(d) if every is None else every
    if not every:
        return []
    texts = [s.explain for s in c.support if s.certainty > 0]
    for i in c.evidence:
        f = d.facts[i]
        if f.kind.startswith("capture."):
            texts.extend(_strings(f))
    picked: list[Ladder] = []
    for text in texts:
        for name, first, _last in _FRAMES.findall(text):
            for lad in every:
                if lad not in picked and lad.first_frame == int(first) and name.endswith(lad.source):
                    picked.append(lad)
    return picked[:MAX_LADDERS_PER_CAUSE]


def _strings(f: Fact) -> list[str]:
    out = [f.provenance.cite()]
    for value in f.attrs.values():
        if isinstance(value, tuple):
            out.extend(str(v) for v in value)
        elif isinstance(value, str):
            out.append(value)
    return out


_FLAG_COLOUR = (("RST", "#cf222e"), ("FIN", "#0969da"), ("SYN", "#1a7f37"))
LANE_L, LANE_R, TOP, STEP = 250, 650, 78, 34


def _colour(flags: str) -> str:
    for name, colour in _FLAG_COLOUR:
        if name in flags.split(","):
            return colour
    return "#57606a"


def ladder_svg(lad: Ladder) -> str:
    """The ladder as inline SVG: the two endpoints, each packet an arrow with its flags, window,
    length, time after the first packet and frame number; the teardown and the Status 64 entries."""
    extra = sum(1 for r in lad.rows if r.cut_after)
    height = TOP + STEP * (len(lad.rows) + extra) + 80 + 16 * len(lad.status64)
    width = 760
    out = [
        f'<svg class="ladder" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(lad.title)}" '
        'font-family="system-ui,sans-serif" font-size="12">',
        f"<title>{esc(lad.title)}</title>",
        f'<rect x="{LANE_L - 110}" y="8" width="220" height="30" rx="4" fill="#f6f8fa" stroke="#d0d7de"/>',
        f'<rect x="{LANE_R - 110}" y="8" width="220" height="30" rx="4" fill="#f6f8fa" stroke="#d0d7de"/>',
        f'<text class="endpoint" x="{LANE_L}" y="28" text-anchor="middle" font-weight="600">{esc(lad.left)}</text>',
        f'<text class="endpoint" x="{LANE_R}" y="28" text-anchor="middle" font-weight="600">{esc(lad.right)}</text>',
        '<text x="8" y="58" fill="#656d76">frame</text><text x="70" y="58" fill="#656d76">time (s)</text>',
    ]
    bottom = height - 56 - 16 * len(lad.status64)
    for x in (LANE_L, LANE_R):
        out.append(f'<line x1="{x}" y1="38" x2="{x}" y2="{bottom}" stroke="#8c959f" stroke-dasharray="4 3"/>')
    y = TOP
    for r in lad.rows:
        colour = _colour(r.flags)
        x1, x2 = (LANE_L, LANE_R) if r.forward else (LANE_R, LANE_L)
        tip = x2 - 9 if r.forward else x2 + 9
        label = f"win {r.window}" if r.window != "-" else "win -"
        detail = f"{label}, len {r.length}" + (", bad checksum" if r.bad_checksum else "")
        out += [
            f'<g class="packet" data-frame="{r.frame}">',
            f'<text class="frame" x="8" y="{y + 4}">{r.frame}</text>',
            f'<text class="time" x="70" y="{y + 4}">{r.time:.6f}</text>',
            f'<line x1="{x1}" y1="{y}" x2="{tip}" y2="{y}" stroke="{colour}" stroke-width="2"/>',
            f'<polygon points="{x2},{y} {tip},{y - 5} {tip},{y + 5}" fill="{colour}"/>',
            f'<text class="flags" x="{(LANE_L + LANE_R) // 2}" y="{y - 6}" text-anchor="middle" '
            f'fill="{colour}" font-weight="600">{esc(r.flags)}</text>',
            f'<text class="detail" x="{(LANE_L + LANE_R) // 2}" y="{y + 14}" text-anchor="middle" '
            f'fill="#656d76" font-size="11">{esc(detail)}</text>',
            "</g>",
        ]
        y += STEP
        if r.cut_after:
            out.append(
                f'<text class="cut" x="{(LANE_L + LANE_R) // 2}" y="{y - 8}" text-anchor="middle" '
                'fill="#656d76">&#8942; packets not shown</text>'
            )
            y += STEP
    note = teardown_note(lad)
    out.append(f'<text class="teardown" x="8" y="{bottom + 22}" font-weight="600">{esc(note)}</text>')
    out.append(
        f'<text class="chosen" x="8" y="{bottom + 40}" fill="#656d76">Shown because: {esc(lad.chosen_for)}</text>'
    )
    for n, cite in enumerate(lad.status64):
        out.append(
            f'<text class="status64" x="8" y="{bottom + 58 + 16 * n}" fill="#9a6700">'
            f"Status 64 logged: {esc(_short(cite))}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def teardown_note(lad: Ladder) -> str:
    """The teardown label, and who closed how: "dirty-close: server FIN,ACK, then TMG RST,ACK 0.339 s later"."""

    def who(r: Row) -> str:
        return (lad.left if r.forward else lad.right).split(" ", 1)[0]

    fin = next((r for r in lad.rows if "FIN" in r.flags.split(",")), None)
    rst = next((r for r in lad.rows if "RST" in r.flags.split(",")), None)
    parts = []
    if fin is not None and rst is not None and fin.frame < rst.frame:
        parts.append(
            f"{who(fin)} {fin.flags} (frame {fin.frame}), then {who(rst)} {rst.flags} "
            f"{rst.time - fin.time:.3f} s later (frame {rst.frame})"
        )
    elif rst is not None:
        parts.append(f"{who(rst)} {rst.flags} (frame {rst.frame})")
    elif fin is not None:
        parts.append(f"first FIN from {who(fin)} (frame {fin.frame})")
    if lad.omitted:
        parts.append(f"{lad.omitted} packets not shown")
    return f"{lad.teardown}: " + "; ".join(parts) if parts else lad.teardown


def _short(cite: str) -> str:
    """`/long/path/file.w3c:7` -> `file.w3c:7`."""
    return re.split(r"[\\/]", cite)[-1]


def ladder_html(lad: Ladder, excerpts: dict[str, str]) -> str:
    """A figure: the ladder, and the Status 64 log lines it matched, word for word."""
    lines = [
        f'<figure class="ladder" id="{esc(lad.anchor)}">',
        ladder_svg(lad),
        "<figcaption>",
        f"<code>{esc(lad.title)}</code>" + (f", from {esc(lad.start_time)}" if lad.start_time else ""),
    ]
    for cite in lad.status64:
        raw = excerpts.get(cite)
        lines.append(
            f'<div class="logline">Status 64 entry <code>{esc(cite)}</code>'
            + (f"<pre>{esc(raw)}</pre>" if raw is not None else "")
            + "</div>"
        )
    lines.append("</figcaption></figure>")
    return "".join(lines)


def ladder_text(lad: Ladder, width: int = 44) -> list[str]:
    """The ladder for a terminal: one line per packet, an arrow between the two endpoints."""
    gap = " " * 19
    head = f"{gap}{lad.left}"
    out = [f"{head}{' ' * max(2, width + 21 - len(head))}{lad.right}", f"{'frame':>7}  {'time (s)':>9} |{' ' * width}|"]
    for r in lad.rows:
        label = f" {r.flags} win={r.window} len={r.length} "
        pad = max(0, width - len(label) - 1)
        left, right = pad // 2, pad - pad // 2
        arrow = ("-" * left + label + "-" * right + ">") if r.forward else ("<" + "-" * left + label + "-" * right)
        out.append(f"{r.frame:>7}  {r.time:>9.6f} |{arrow}|" + ("  bad checksum" if r.bad_checksum else ""))
        if r.cut_after:
            out.append(f"{'':>7}  {'':>9} |{'... packets not shown':^{width}}|")
    out.append(f"  {teardown_note(lad)}; {lad.chosen_for}")
    out.extend(f"  Status 64 logged: {s}" for s in lad.status64)
    return [clean(line) for line in out]


# ----------------------------------------------------------------------------------- timeline
@dataclass(frozen=True)
class Timeline:
    unit: int  # seconds per bucket: 60 or 3600
    status64: dict[int, int]  # bucket start (epoch seconds) -> entries
    client_errors: dict[int, int]
    bursts: tuple[int, ...]  # burst minutes (epoch seconds)
    capture: tuple[float, float] | None  # capture window (epoch seconds)
    capture_note: str
    start: int
    end: int  # exclusive


def _epoch(text: str) -> float | None:
    """UTC ISO 8601 `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` -> epoch seconds."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z?", text.strip())
    if not m:
        return None
    try:
        return timegm(strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + float(m.group(2) or 0)
    except ValueError:
        return None


def _counts(items: Iterable[object]) -> dict[int, int]:
    out: dict[int, int] = {}
    for item in items:
        when, _, n = str(item).partition(" ")
        t = _epoch(when)
        if t is not None and n.isdigit():
            out[int(t)] = out.get(int(t), 0) + int(n)
    return out


def timeline(d: Diagnosis) -> Timeline | None:
    """The Status 64 timeline of the diagnosis (None without a log summary with Status 64 entries)."""
    log = next((f for f in d.facts if f.kind == "log.status_summary" and f.subject == "all"), None)
    if log is None:
        return None
    a = log.attrs
    if "status64_by_minute" in a:
        unit, s64, errors = 60, _counts(a["status64_by_minute"]), _counts(a.get("client_errors_by_minute", ()))  # type: ignore[arg-type]
    else:
        unit, s64, errors = 3600, _counts(a.get("status64_by_hour", ())), _counts(a.get("client_errors_by_hour", ()))  # type: ignore[arg-type]
    if not s64:
        return None
    bursts = tuple(int(t) for t in (_epoch(str(m)) for m in a.get("burst_minutes", ()) or ()) if t is not None)  # type: ignore[union-attr]
    capture, note = _capture_window(d, log)
    times = [*s64, *errors]
    for name in ("first_time", "last_time"):  # the span the logs cover
        t = _epoch(str(a.get(name, "")))
        if t is not None:
            times.append(int(t) // unit * unit)
    start, end = min(times), max(times) + unit
    if capture is not None:
        if min(capture[1], end) - max(capture[0], start) < -MAX_BUCKETS * unit:
            capture, note = None, ""  # a capture far from the entries: no stretching the axis
        else:
            start = min(start, int(capture[0]) // unit * unit)
            end = max(end, (int(capture[1]) // unit + 1) * unit)
    short = MIN_BUCKETS[unit] - (end - start) // unit
    if short > 0:  # a short span: widened on both sides, so that a bar is a bar
        start -= short // 2 * unit
        end += (short - short // 2) * unit
    return Timeline(unit, s64, errors, bursts, capture, note, start, end)


def _capture_window(d: Diagnosis, log: Fact) -> tuple[tuple[float, float] | None, str]:
    cap = next((f for f in d.facts if f.kind == "capture.teardown_summary" and f.subject == "all"), None)
    if cap is None or "first_time" not in cap.attrs:
        return None, ""
    first, last, basis = str(cap.attrs["first_time"]), str(cap.attrs["last_time"]), cap.attrs.get("time_basis")
    if basis == "absolute":
        t0, t1 = _epoch(first), _epoch(last)
        return ((t0, t1), "capture window (UTC)") if t0 is not None and t1 is not None else (None, "")
    if basis == "time of day":
        day0, day1 = str(log.attrs.get("first_time", ""))[:10], str(log.attrs.get("last_time", ""))[:10]
        if day0 and day0 == day1:
            t0, t1 = _epoch(f"{day0}T{first}Z"), _epoch(f"{day0}T{last}Z")
            if t0 is not None and t1 is not None:
                return (t0, t1), "capture window (its time of day, placed on the logged day)"
    return None, ""


def _hhmm(t: float, unit: int) -> str:
    from time import gmtime, strftime

    return strftime("%H:%M" if unit == 60 else "%m-%d %H:00", gmtime(t))


def timeline_svg(t: Timeline) -> str:
    """Status 64 entries per bucket as bars above the axis, client-visible failures below it, burst
    minutes marked, the capture window shaded."""
    width, left, right, axis, tall = 760, 48, 16, 130, 90
    buckets = max(1, (t.end - t.start) // t.unit)
    span = width - left - right
    bar = min(span / buckets, 24.0)

    def x(when: float) -> float:
        return left + (when - t.start) / (t.end - t.start) * span

    peak = max(t.status64.values())
    peak_err = max(t.client_errors.values(), default=0)
    out = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{axis + 80}" '
        f'viewBox="0 0 {width} {axis + 80}" role="img" aria-label="Status 64 entries over time" '
        'font-family="system-ui,sans-serif" font-size="12"><title>Status 64 entries over time</title>'
    ]
    if t.capture is not None:
        c0, c1 = x(t.capture[0]), max(x(t.capture[1]), x(t.capture[0]) + 2)
        out.append(
            f'<rect class="capture" x="{c0:.1f}" y="12" width="{c1 - c0:.1f}" height="{axis + 30}" '
            'fill="#ddf4ff" stroke="#54aeff"/>'
        )
        out.append(
            f'<text class="capture-label" x="{c0:.1f}" y="10" fill="#0969da" font-size="11">'
            f"{esc(t.capture_note)}</text>"
        )
    for when, n in sorted(t.status64.items()):
        h = max(1.0, n / peak * tall)
        out.append(
            f'<rect class="s64" data-time="{when}" data-count="{n}" x="{x(when):.1f}" y="{axis - h:.1f}" '
            f'width="{max(1.0, bar - 1):.1f}" height="{h:.1f}" fill="#9a6700"><title>{n} Status 64 at '
            f"{esc(_hhmm(when, t.unit))}</title></rect>"
        )
    for when, n in sorted(t.client_errors.items()):
        h = max(1.0, n / peak_err * 30)
        out.append(
            f'<rect class="client-error" data-time="{when}" data-count="{n}" x="{x(when):.1f}" y="{axis + 2}" '
            f'width="{max(1.0, bar - 1):.1f}" height="{h:.1f}" fill="#cf222e"><title>{n} client-visible '
            f"failures at {esc(_hhmm(when, t.unit))}</title></rect>"
        )
    for when in t.bursts:
        bx = x(when)
        out.append(
            f'<polygon class="burst" points="{bx:.1f},{axis - tall - 14} {bx - 5:.1f},{axis - tall - 22} '
            f'{bx + 5:.1f},{axis - tall - 22}" fill="#cf222e"><title>burst at {esc(_hhmm(when, 60))}'
            "</title></polygon>"
        )
    out += [
        f'<line x1="{left}" y1="{axis + 1}" x2="{width - right}" y2="{axis + 1}" stroke="#1f2328"/>',
        f'<text class="peak" x="{left - 4}" y="{axis - tall + 4}" text-anchor="end">{peak}</text>',
        f'<text x="{left - 4}" y="{axis + 4}" text-anchor="end">0</text>',
        f'<text class="start" x="{left}" y="{axis + 48}">{esc(_hhmm(t.start, t.unit))} UTC</text>',
        f'<text class="end" x="{width - right}" y="{axis + 48}" text-anchor="end">'
        f"{esc(_hhmm(t.end, t.unit))} UTC</text>",
        f'<text x="{left}" y="{axis + 68}" fill="#656d76">per {"minute" if t.unit == 60 else "hour"}: '
        "Status 64 above the line, client-visible failures below; triangles mark bursts</text>",
        "</svg>",
    ]
    return "".join(out)


# ----------------------------------------------------------------------------------- evidence as read
def read_lines(d: Diagnosis, index: int) -> list[tuple[str, str]]:
    """The raw lines (log lines, frames of text exports) behind a cited fact: (file:line, text)."""
    f = d.facts[index]
    excerpts = d.bundle.excerpts
    strings = _strings(f)
    blob = "\n".join(strings)
    out: list[tuple[str, str]] = []
    ranges = [(name, int(a), int(b)) for s in strings for name, a, b in _FRAMES.findall(s)]
    if f.kind == "capture.connection" or f.kind == "capture.packets":
        ranges.append(
            (
                f.provenance.source or "",
                _int(f.attrs.get("first_frame")),
                _int(f.attrs.get("last_frame")),
            )
        )
    location = f"{f.provenance.source}:{str(f.provenance.location or '').replace('line ', '')}"
    for key, text in excerpts.items():
        file, _, _line = key.rpartition(":")
        hit = key == location or re.search(re.escape(key) + r"(?!\d)", blob) is not None
        if not hit and ranges:
            number = text.split(None, 1)[0] if text.strip() else ""
            hit = number.isdigit() and any(
                name and (file.endswith(name) or name.endswith(file)) and a <= int(number) <= b for name, a, b in ranges
            )
        if hit:
            out.append((key, text))
        if len(out) >= MAX_EXCERPTS_PER_FACT:
            return out
    # frames with no text of their own (binary captures, frames not cited): as the capture probe decoded them
    seen = {(key.rpartition(":")[0], text.split(None, 1)[0]) for key, text in out if text.strip()}
    for g in d.facts:
        if g.kind != "capture.packets" or not any(
            name and (g.provenance.source or "").endswith(name) and g.attrs.get("first_frame") == a
            for name, a, _b in ranges
        ):
            continue
        for row in g.attrs.get("frames", ()) or ():  # type: ignore[union-attr]
            parts = str(row).split()
            if len(parts) < 8 or (g.provenance.source, parts[0]) in seen:
                continue
            out.append(
                (
                    f"{g.provenance.source} frame {parts[0]}",
                    f"(decoded) {'->' if parts[2] == '>' else '<-'} {parts[3]} win {parts[4]} len {parts[5]} "
                    f"seq {parts[6]} ack {parts[7]}" + (" bad checksum" if "bad-checksum" in parts[8:] else ""),
                )
            )
            if len(out) >= MAX_EXCERPTS_PER_FACT:
                return out
    return out


def undecided_groups(d: Diagnosis) -> list[tuple[str, list[str]]]:
    """The undecided rules grouped by the evidence they lack, each kind once: (kind, causes)."""
    by_missing: dict[str, list[str]] = {}
    for o in d.unknowns:
        for missing in o.missing:
            by_missing.setdefault(missing, []).append(o.rule.conclude.cause)
    return [(missing, list(dict.fromkeys(causes))) for missing, causes in sorted(by_missing.items())]
