"""The mergeable summary of a stretch of log records, and the facts made from it.

A `LogSummary` is computed for one file, or one byte range of a file, by one worker; summaries are
combined with `merge()` in any grouping (per file, per core, later per machine), and facts are made
once from the combined summary. Everything in it is a count, a bounded list, or a compact per-client
array of seconds, so the memory it needs does not grow with the number of records read.
"""

from __future__ import annotations

import bisect
import statistics
import typing
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from diagnose.compat import UTC
from diagnose.facts import Fact, make_fact
from diagnose.thresholds import thresholds

PROBE = "logs"
MAX_SAMPLES = 5  # Status 64 citations kept
MAX_CODE_SAMPLES = 3  # citations kept per other code group
MAX_NOTES = 50  # problems kept word for word; the rest are only counted
# Times of Status 64 entries and client-visible failures kept per client for the coincidence check
# (8 bytes each, 32 MB at most); entries beyond are counted, and counted as unchecked.
MAX_EVENT_TIMES = 4_000_000
MAX_NAMES = 100  # TMG computer names and users kept (besides those of cited records)
MAX_SERVERS = 2000  # per-server scopes kept; the servers beyond are counted together as SERVERS_BEYOND
SERVERS_BEYOND = "(others)"
MAX_SCOPE_FACTS = 20  # per-server and per-rule facts emitted (highest Status 64 first)
# the judging thresholds, with why each is what it is: checks/thresholds.yaml (diagnose/thresholds.py)
COINCIDENCE_WINDOW = thresholds().coincidence_window  # seconds between a Status 64 and the client's failure
BURST_FLOOR = thresholds().burst_floor  # a burst minute has at least this many Status 64 entries ...
BURST_FACTOR = thresholds().burst_factor  # ... and at least this many times the median per active minute
OA_LONG_MS = thresholds().oa_long_ms  # an Outlook Anywhere channel that stayed open at least this long
TIMELINE_MINUTES = 360  # per-minute counts are reported when every entry falls within this many minutes
# Source addresses of flood-mitigation denials counted exactly; past twice this many, the least
# counted are folded into `flood_other`, so a flood from many addresses stays bounded in memory
# while the heaviest sources keep their counts.
MAX_FLOOD_SOURCES = 256
FLOOD_TOP = 5  # sources named in the facts
NO_SOURCE = "(no address logged)"

# Metrics counted per scope (all / server / rule / leg).
COUNTERS = (
    "connections",
    "status64_count",
    "status64_server_leg",
    "status64_client_leg",
    "status64_unknown_leg",
    "host_not_found",
    "timed_out",
    "refused",
    "address_in_use",
    "no_buffers",
    "connection_killed",
    "cert_name_mismatch",
    "cert_errors_500",
    "flood_denials",
    "leg_server",
    "leg_client",
    "leg_unknown",
)
# Code groups whose records are cited as samples besides Status 64.
SAMPLED_GROUPS = (
    "host_not_found",
    "timed_out",
    "refused",
    "address_in_use",
    "no_buffers",
    "connection_killed",
    "cert_name_mismatch",
    "cert_errors_500",
    "flood_denials",
    "client_error",
)

Citation = typing.Tuple[str, int, str]  # (file, line, raw text)


@dataclass
class LogSummary:
    records: int = 0
    bad_lines: int = 0
    truncated: int = 0
    unreadable: int = 0
    lines: int = 0  # physical lines read (to place byte ranges of one file end to end)
    notes: list[Citation] = field(default_factory=list)  # (file, line or 0, message)
    notes_dropped: int = 0
    bad_samples: list[tuple[str, int]] = field(default_factory=list)
    formats: Counter[str] = field(default_factory=Counter)
    files: list[str] = field(default_factory=list)
    action_status: Counter[tuple[str, str]] = field(default_factory=Counter)
    scopes: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)
    s64_actions: Counter[str] = field(default_factory=Counter)
    s64_minutes: Counter[int] = field(default_factory=Counter)
    s64_events: dict[str, array] = field(default_factory=dict)  # client -> epoch seconds
    failure_events: dict[str, array] = field(default_factory=dict)  # client -> epoch seconds
    s64_no_client: int = 0
    event_times: int = 0  # times held in s64_events and failure_events together
    max_event_times: int = field(default_factory=lambda: MAX_EVENT_TIMES)
    s64_unchecked: int = 0  # Status 64 entries not set beside client errors: no time, or over MAX_EVENT_TIMES
    failures_unchecked: int = 0  # client-visible failures whose time was not kept (over MAX_EVENT_TIMES)
    servers: int = 0  # per-server scopes held
    samples: list[Citation] = field(default_factory=list)
    code_samples: dict[str, list[Citation]] = field(default_factory=dict)
    outlook_anywhere: int = 0
    outlook_anywhere_long: int = 0
    first_time: str = ""
    last_time: str = ""
    computers: set[str] = field(default_factory=set)  # TMG computer names of the records read one by one
    users: set[str] = field(default_factory=set)  # users of the Status 64, client-failure and cited records
    flood_sources: Counter[str] = field(default_factory=Counter)  # source address -> flood denials
    flood_other: int = 0  # flood denials of sources folded away (see MAX_FLOOD_SOURCES)
    local_without_tz: bool = False  # some records were in TMG's local time and no --tz was given

    # ------------------------------------------------------------------ accumulating
    def scope(self, kind: str, name: str) -> Counter[str]:
        key = (kind, name)
        found = self.scopes.get(key)
        if found is None:
            if kind == "server" and name != SERVERS_BEYOND:
                if self.servers >= MAX_SERVERS:
                    key = (kind, SERVERS_BEYOND)
                    found = self.scopes.get(key)
                    if found is None:
                        found = self.scopes[key] = Counter()
                    return found
                self.servers += 1
            found = self.scopes[key] = Counter()
        return found

    def note(self, source: str, line: int, message: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append((source, line, message))
        else:
            self.notes_dropped += 1

    def bad_line(self, source: str, line: int, message: str, truncated: bool = False) -> None:
        self.bad_lines += 1
        if truncated:
            self.truncated += 1
        if len(self.bad_samples) < MAX_SAMPLES:
            self.bad_samples.append((source, line))
        self.note(source, line, message)

    def see_time(self, first: str, last: str) -> None:
        if first and (not self.first_time or first < self.first_time):
            self.first_time = first
        if last and last > self.last_time:
            self.last_time = last

    def flood_from(self, source: str, n: int = 1) -> None:
        """Count `n` flood-mitigation denials of one source address ("" when none was logged)."""
        self.flood_sources[source or NO_SOURCE] += n
        if len(self.flood_sources) > 2 * MAX_FLOOD_SOURCES:
            kept = self.flood_sources.most_common(MAX_FLOOD_SOURCES)
            self.flood_other += sum(self.flood_sources.values()) - sum(count for _, count in kept)
            self.flood_sources = Counter(dict(kept))

    def cite(self, group: str, citation: Citation) -> None:
        kept = self.code_samples.setdefault(group, [])
        if len(kept) < MAX_CODE_SAMPLES:
            kept.append(citation)

    # ------------------------------------------------------------------ combining
    def shifted(self, source: str, by: int) -> LogSummary:
        """Line numbers of `source` moved down by `by` (a later byte range of the same file)."""
        if by == 0:
            return self

        def move(c: Citation) -> Citation:
            return (c[0], c[1] + by if c[0] == source and c[1] else c[1], c[2])

        self.notes = [move(c) for c in self.notes]
        self.samples = [move(c) for c in self.samples]
        self.code_samples = {g: [move(c) for c in cs] for g, cs in self.code_samples.items()}
        self.bad_samples = [(s, n + by if s == source else n) for s, n in self.bad_samples]
        return self

    def merge(self, other: LogSummary) -> LogSummary:
        for name in (
            "records",
            "bad_lines",
            "truncated",
            "unreadable",
            "lines",
            "notes_dropped",
            "s64_no_client",
            "s64_unchecked",
            "failures_unchecked",
            "outlook_anywhere",
            "outlook_anywhere_long",
            "flood_other",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        room = MAX_NOTES - len(self.notes)
        self.notes.extend(other.notes[:room])
        self.notes_dropped += max(0, len(other.notes) - room)
        self.bad_samples.extend(other.bad_samples[: MAX_SAMPLES - len(self.bad_samples)])
        self.formats.update(other.formats)
        self.files.extend(f for f in other.files if f not in self.files)
        self.action_status.update(other.action_status)
        for key, counts in other.scopes.items():
            self.scope(*key).update(counts)
        self.s64_actions.update(other.s64_actions)
        self.s64_minutes.update(other.s64_minutes)
        room = self.max_event_times - self.event_times
        for mine, theirs, s64 in (
            (self.s64_events, other.s64_events, True),
            (self.failure_events, other.failure_events, False),
        ):
            for client, times in theirs.items():
                kept = times if len(times) <= room else times[: max(room, 0)]
                room -= len(kept)
                if s64:
                    self.s64_unchecked += len(times) - len(kept)
                else:
                    self.failures_unchecked += len(times) - len(kept)
                if not kept:
                    continue
                if client in mine:
                    mine[client].extend(kept)
                else:
                    mine[client] = array("q", kept)
        self.event_times = self.max_event_times - room
        self.samples.extend(other.samples[: MAX_SAMPLES - len(self.samples)])
        for group, cites in other.code_samples.items():
            for c in cites:
                self.cite(group, c)
        self.see_time(other.first_time, other.last_time)
        self.computers |= other.computers
        self.local_without_tz |= other.local_without_tz
        self.users |= other.users
        for source, n in other.flood_sources.items():
            self.flood_from(source, n)
        return self

    # ------------------------------------------------------------------ derived figures
    def coincidences(self, window: int = COINCIDENCE_WINDOW) -> int:
        """Status 64 entries with a client-visible failure of the same client within `window` seconds."""
        hits = 0
        for client, times in self.s64_events.items():
            failures = self.failure_events.get(client)
            if not failures:
                continue
            fail_sorted = sorted(failures)
            for t in times:
                i = bisect.bisect_left(fail_sorted, t - window)
                if i < len(fail_sorted) and fail_sorted[i] <= t + window:
                    hits += 1
        return hits

    def bursts(self) -> tuple[list[str], int, str]:
        """(burst minutes as ISO strings, peak count per minute, peak minute)."""
        if not self.s64_minutes:
            return [], 0, ""
        median = statistics.median(self.s64_minutes.values())
        threshold = max(BURST_FLOOR, BURST_FACTOR * median)
        peak_minute, peak = max(self.s64_minutes.items(), key=lambda kv: (kv[1], -kv[0]))
        burst = sorted(m for m, n in self.s64_minutes.items() if n >= threshold)
        return [_iso(m * 60) for m in burst], peak, _iso(peak_minute * 60)

    def hourly(self) -> list[str]:
        hours: Counter[int] = Counter()
        for minute, n in self.s64_minutes.items():
            hours[minute // 60] += n
        return [f"{_iso(h * 3600)} {n}" for h, n in sorted(hours.items())]

    def client_error_minutes(self) -> Counter[int]:
        """Client-visible failures per minute (of those whose time was kept)."""
        minutes: Counter[int] = Counter()
        for times in self.failure_events.values():
            minutes.update(t // 60 for t in times)
        return minutes

    def timeline(self) -> dict[str, list[str]]:
        """Client-visible failures per hour, and Status 64 and client failures per minute when all of
        them fall within TIMELINE_MINUTES minutes (for the reports' timeline)."""
        failures = self.client_error_minutes()
        hours: Counter[int] = Counter()
        for minute, n in failures.items():
            hours[minute // 60] += n
        out = {"client_errors_by_hour": [f"{_iso(h * 3600)} {n}" for h, n in sorted(hours.items())]}
        minutes = set(self.s64_minutes) | set(failures)
        if minutes and max(minutes) - min(minutes) < TIMELINE_MINUTES:
            out["status64_by_minute"] = [f"{_iso(m * 60)} {n}" for m, n in sorted(self.s64_minutes.items())]
            out["client_errors_by_minute"] = [f"{_iso(m * 60)} {n}" for m, n in sorted(failures.items())]
        return out

    @property
    def partial(self) -> bool:
        return bool(self.bad_lines or self.truncated or self.unreadable)


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------ facts


def _cite(c: Citation) -> str:
    return f"{c[0]}:{c[1]}"


def _scope_attrs(counts: Counter[str]) -> dict[str, Any]:
    connections = counts["connections"]
    s64 = counts["status64_count"]
    attrs: dict[str, Any] = {
        name: counts[name] for name in COUNTERS if not name.startswith("leg_") and name != "status64_unknown_leg"
    }
    attrs["status64_share"] = round(s64 / connections, 6) if connections else 0.0
    legs = {leg: counts[f"leg_{leg}"] for leg in ("server", "client", "unknown")}
    if any(legs.values()):
        attrs["leg"] = max(legs, key=lambda k: legs[k])
    return attrs


def _flood_attrs(summary: LogSummary, denials: int) -> dict[str, Any]:
    """Where the flood-mitigation denials come from: `flood_source` when every one of them comes
    from one logged address, and the top sources with their counts."""
    if not denials:
        return {}
    top = summary.flood_sources.most_common(FLOOD_TOP)
    shown = [f"{source} ({n})" for source, n in top]
    rest = denials - sum(n for _, n in top)
    if rest > 0:
        shown.append(f"{rest} from other sources")
    attrs: dict[str, Any] = {"flood_sources": shown}
    if len(top) == 1 and top[0][1] == denials and top[0][0] != NO_SOURCE and not summary.flood_other:
        attrs["flood_source"] = top[0][0]
    return attrs


def build_facts(summary: LogSummary, check: str | None = None) -> tuple[list[Fact], dict[str, str]]:
    """The `log.status_summary` facts and the excerpts they cite."""
    excerpts: dict[str, str] = {}
    for c in summary.samples:
        excerpts[_cite(c)] = c[2]
    for cites in summary.code_samples.values():
        for c in cites:
            excerpts[_cite(c)] = c[2]
    source = summary.files[0] if len(summary.files) == 1 else f"{len(summary.files)} files"
    overall = summary.scope("all", "all")
    attrs = _scope_attrs(overall)
    bursts, peak, peak_minute = summary.bursts()
    attrs.update(
        scope="all",
        records=summary.records,
        bad_lines=summary.bad_lines,
        truncated_lines=summary.truncated,
        partial=summary.partial,
        status64_with_client_error=summary.coincidences(),
        status64_unchecked=summary.s64_no_client + summary.s64_unchecked,
        client_errors_unchecked=summary.failures_unchecked,
        coincidence_window=COINCIDENCE_WINDOW,
        outlook_anywhere=summary.outlook_anywhere,
        outlook_anywhere_long=summary.outlook_anywhere_long,
        first_time=summary.first_time or None,
        last_time=summary.last_time or None,
        samples=[_cite(c) for c in summary.samples],
        bad_line_samples=[f"{s}:{n}" for s, n in summary.bad_samples],
        files=len(summary.files),
        formats=sorted(summary.formats),
        status64_by_hour=summary.hourly(),
        bursts=len(bursts),
        burst_minutes=bursts[:20],
        status64_peak_per_minute=peak,
        status64_peak_minute=peak_minute or None,
        other_samples=[f"{g} {_cite(c)}" for g, cs in sorted(summary.code_samples.items()) for c in cs],
        computers=sorted(summary.computers),
        users=sorted(summary.users),
        **summary.timeline(),
        **_flood_attrs(summary, overall["flood_denials"]),
    )
    if summary.s64_actions:
        attrs["action"] = summary.s64_actions.most_common(1)[0][0]
    facts = [make_fact("log.status_summary", "all", PROBE, source=source, check=check, **attrs)]
    first = summary.samples[0] if summary.samples else None
    for kind, attr in (("server", "server"), ("rule", "rule")):
        scoped = [(name, counts) for (k, name), counts in summary.scopes.items() if k == kind]
        scoped.sort(key=lambda nc: (-nc[1]["status64_count"], -nc[1]["connections"], nc[0]))
        for name, counts in scoped[:MAX_SCOPE_FACTS]:
            facts.append(
                make_fact(
                    "log.status_summary",
                    f"{kind}:{name}",
                    PROBE,
                    source=source,
                    check=check,
                    scope=kind,
                    **{attr: name},  # type: ignore[arg-type]  # server or rule: not a provenance keyword
                    **_scope_attrs(counts),
                )
            )
    for (kind, name), counts in sorted(summary.scopes.items()):
        if kind == "leg":
            leg_attrs = _scope_attrs(counts)
            leg_attrs["leg"] = name
            facts.append(
                make_fact(
                    "log.status_summary",
                    f"leg:{name}",
                    PROBE,
                    source=source,
                    check=check,
                    scope="leg",
                    **leg_attrs,
                )
            )
    if first is not None:
        facts[0] = make_fact(
            "log.status_summary",
            "all",
            PROBE,
            source=first[0],
            location=f"line {first[1]}",
            check=check,
            **attrs,
        )
    return facts, excerpts
