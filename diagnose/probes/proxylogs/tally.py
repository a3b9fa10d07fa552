"""Counting the records of proxy logs by distinct key, with cited samples, into `proxy.status_summary` facts.

Every reader turns a block of records into one key per record, the same shape for every product:

    (scope, status, sub, code, long_poll, seconds)

`scope` is the site, back end or upstream the record belongs to; `status` the HTTP status (or "-");
`sub` the IIS sub-status or Exchange back-end status; `code` the Win32 code, HAProxy termination
state, nginx error or Exchange error code; `long_poll` the long-lived request class (EAS Ping,
RPC_IN_DATA, RPC_OUT_DATA, MAPI NotificationWait) or ""; `seconds` the duration of a long-lived
request in whole seconds (-1 otherwise). Keys are counted with one `Counter` per block; each distinct
key is classified once by the product's `classify`, and only the records of keys whose classes
still want a sample are looked at one by one.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import compress
from typing import Any, Callable, NamedTuple, Tuple

from diagnose.facts import Fact, make_fact
from diagnose.probes.proxylogs import idle

try:
    from diagnose.probes.proxylogs._fastproxy import add_closed as _add_closed
except ImportError:  # not built: Tally.quiet and Tally.add do the same in Python
    _add_closed = None
if os.environ.get("DIAGNOSE_PURE_PYTHON"):
    _add_closed = None

PROBE = "proxylogs"
KIND = "proxy.status_summary"
MAX_KEYS = 65536  # distinct keys counted before they are folded into the figures
MAX_VALUES = 200  # distinct statuses / codes listed per scope; the rest are "(other)"
MAX_SCOPES = 200  # scopes kept per product; the rest are counted together as "(others)"
MAX_SCOPE_FACTS = 20  # scope facts emitted per product (most records first)
MAX_SAMPLES = 3  # citations kept per product and class
MAX_BAD_SAMPLES = 10
MAX_NOTES = 50
MAX_DURATIONS = 10  # long-poll durations listed per class
PART_VALUES = 1024  # distinct statuses, codes kept per scope of one byte range (merged under MAX_VALUES)
PART_DURATIONS = 8192  # distinct long-poll durations kept per scope of one byte range
OTHER = "(other)"
OTHERS = "(others)"

# the classes a key can fall in, each an int attribute of the facts
CLASSES = (
    "server_errors",
    "bad_gateway",
    "gateway_timeout",
    "service_unavailable",
    "arr_502_3",
    "client_closed",
    "client_timeout",
    "server_closed",
    "server_timeout",
    "server_reset",
    "connection_closed",
    "connection_reset",
    "timed_out",
    "refused",
    "unreachable",
    "name_not_resolved",
    "bad_response",
    "tls_failure",
    "proxy_denied",
    "long_poll",
    "long_poll_failed",
    "rpc_body_rejected",
)
LONG_POLLS = ("eas_ping", "rpc_in_data", "rpc_out_data", "mapi_notificationwait")
SAMPLED = frozenset(CLASSES) - {"long_poll"}  # classes whose first records are cited

# (scope, status, sub, code) as logged (bytes, or str from readers that parse text), long poll, seconds
Key = Tuple[object, object, object, object, str, int]


class KeyInfo(NamedTuple):
    """How one distinct key is counted: its scope ("" or "KIND:NAME"), status and code as listed, classes."""

    scope: str
    status: str
    code: str
    classes: tuple[str, ...]


Classify = Callable[[Key], KeyInfo]


@dataclass
class Figures:
    """The counts of one scope of one product."""

    records: int = 0
    statuses: Counter = field(default_factory=Counter)
    codes: Counter = field(default_factory=Counter)
    classes: Counter = field(default_factory=Counter)
    durations: Counter = field(default_factory=Counter)  # (long-poll class, seconds) of every long poll
    failed_durations: Counter = field(default_factory=Counter)  # (long-poll class, seconds) of failed long polls
    limit: int = MAX_VALUES  # distinct statuses, codes listed (the figures of a byte range keep more)
    duration_limit: int = MAX_VALUES

    def add(self, info: KeyInfo, key: Key, n: int) -> None:
        self.records += n
        _bounded(self.statuses, info.status, n, self.limit)
        if info.code:
            _bounded(self.codes, info.code, n, self.limit)
        for cls in info.classes:
            self.classes[cls] += n
        if key[4] and key[5] >= 0:
            _bounded(self.durations, (key[4], key[5]), n, self.duration_limit)
            if "long_poll_failed" in info.classes:
                _bounded(self.failed_durations, (key[4], key[5]), n, self.duration_limit)


def _bounded(counter: Counter, value: object, n: int, limit: int = MAX_VALUES) -> None:
    if value in counter or len(counter) < limit:
        counter[value] += n
    else:
        counter[OTHER] += n


@dataclass
class Summary:
    """What the readers found in every file: figures per (product, scope), samples, problems."""

    files: list[str] = field(default_factory=list)
    formats: Counter = field(default_factory=Counter)
    figures: dict[tuple[str, str], Figures] = field(default_factory=dict)
    samples: dict[tuple[str, str], list[tuple[str, int, str]]] = field(default_factory=dict)
    times: dict[str, tuple[str, str]] = field(default_factory=dict)  # product -> (first, last) ISO UTC
    bad_lines: int = 0
    truncated: int = 0
    unreadable: int = 0
    bad_samples: list[tuple[str, int]] = field(default_factory=list)  # (file, line)
    notes: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line or 0, message)
    notes_dropped: int = 0
    messages: Counter = field(default_factory=Counter)  # (file, product) -> lines that are no record, of a part
    part: bool = False  # the summary of one byte range of a file: its figures keep more distinct values

    def _figures(self) -> Figures:
        return Figures(limit=PART_VALUES, duration_limit=PART_DURATIONS) if self.part else Figures()

    @property
    def partial(self) -> bool:
        return bool(self.bad_lines or self.unreadable)

    def scope(self, product: str, scope: str) -> Figures:
        found = self.figures.get((product, scope))
        if found is None:
            if scope != "all" and sum(1 for p, _ in self.figures if p == product) > MAX_SCOPES:
                return self.scope(product, OTHERS)
            found = self.figures[(product, scope)] = self._figures()
        return found

    def note(self, source: str, line: int, message: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append((source, line, message))
        else:
            self.notes_dropped += 1

    def bad_line(self, source: str, line: int, message: str, truncated: bool = False) -> None:
        self.bad_lines += 1
        self.truncated += int(truncated)
        if len(self.bad_samples) < MAX_BAD_SAMPLES:
            self.bad_samples.append((source, line))
        self.note(source, line, message)

    def capped(self) -> bool:
        """Some count was folded into "(other)" / "(others)": such a part cannot be merged exactly."""
        return any(
            scope == OTHERS
            or OTHER in f.statuses
            or OTHER in f.codes
            or OTHER in f.durations
            or OTHER in f.failed_durations
            for (_, scope), f in self.figures.items()
        )

    def merge(self, part: Summary, base: int) -> None:
        """Add the summary of the next byte range of a file, whose line 1 is line `base` + 1 of the file;
        the same as reading the range after the ranges already merged (`part` must not be `capped`)."""
        for name in part.files:
            if name not in self.files:
                self.files.append(name)
        self.formats.update(part.formats)
        for (product, scope), figures in part.figures.items():
            target = self.scope(product, scope)
            target.records += figures.records
            for mine, theirs in (
                (target.statuses, figures.statuses),
                (target.codes, figures.codes),
                (target.durations, figures.durations),
                (target.failed_durations, figures.failed_durations),
            ):
                for value, n in theirs.items():
                    _bounded(mine, value, n)
            target.classes.update(figures.classes)
        for where, cites in part.samples.items():
            kept = self.samples.setdefault(where, [])
            kept.extend((source, line + base, text) for source, line, text in cites[: MAX_SAMPLES - len(kept)])
        for product, (first, last) in part.times.items():
            self.see_times(product, first, last)
        self.bad_lines += part.bad_lines
        self.truncated += part.truncated
        self.unreadable += part.unreadable
        for source, line in part.bad_samples[: MAX_BAD_SAMPLES - len(self.bad_samples)]:
            self.bad_samples.append((source, line + base))
        for source, line, message in part.notes:
            self.note(source, line + base if line else 0, message)
        self.notes_dropped += part.notes_dropped
        self.messages.update(part.messages)

    def see_times(self, product: str, first: str, last: str) -> None:
        if not first:
            return
        old = self.times.get(product)
        self.times[product] = (min(old[0], first), max(old[1], last)) if old else (first, last)


class Tally:
    """Counts the keys of one product in one file; `flush` folds them into the summary's figures."""

    def __init__(self, summary: Summary, product: str, source: str, classify: Classify) -> None:
        self.summary = summary
        self.product = product
        self.source = source
        self._classify = classify
        self._counts: Counter = Counter()
        self._infos: dict[Key, KeyInfo] = {}
        self._wanted: set[Key] = set()
        self._closed: set[Key] = set()  # keys whose classes have all their samples (bounded by MAX_KEYS)

    def info(self, key: Key) -> KeyInfo:
        found = self._infos.get(key)
        if found is None:
            found = self._infos[key] = self._classify(key)
        return found

    def _open(self, info: KeyInfo) -> bool:
        samples = self.summary.samples
        return any(len(samples.get((self.product, c), ())) < MAX_SAMPLES for c in info.classes if c in SAMPLED)

    def consume(self, keys: Sequence[Key], line_of: Callable[[int], int], text_of: Callable[[int], bytes]) -> None:
        """Count a batch of records; record i is on line `line_of(i)` and reads `text_of(i)`."""
        counts = self._counts
        before = len(counts)
        counts.update(keys)
        if len(counts) != before:
            self._wanted = {k for k in counts if self._open(self.info(k))}
        if self._wanted:
            for i in compress(range(len(keys)), map(self._wanted.__contains__, keys)):
                self._sample(keys[i], line_of(i), text_of(i))
                if not self._wanted:
                    break
        if len(counts) > MAX_KEYS:
            self.flush()

    def quiet(self, keys: Iterable[Key]) -> bool:
        """None of `keys` would have a record cited (their classes have all their samples): a block of
        them can be counted by key alone (`add`), as `consume` would count it."""
        closed = self._closed
        for key in keys:
            if key not in closed:
                if self._open(self.info(key)):
                    return False
                closed.add(key)  # samples are only ever added: a closed key stays closed
        return True

    def add(self, counts: Mapping[Key, int]) -> None:
        """Count a block already counted by key (in the order its keys first appear); see `quiet`."""
        before = len(self._counts)
        self._counts.update(counts)
        if len(self._counts) != before:
            self._wanted = {k for k in self._counts if self._open(self.info(k))}
        if len(self._counts) > MAX_KEYS:
            self.flush()

    def absorb(self, counts: Mapping[Key, int]) -> bool:
        """`add` a block counted by key when it is `quiet`; False (nothing counted) when it is not. With
        the C accelerator, a block whose keys were all seen quiet before is added in one C loop."""
        if _add_closed is not None and isinstance(counts, dict) and _add_closed(self._counts, counts, self._closed):
            self.counted()
            return True
        if not self.quiet(counts):
            return False
        self.add(counts)
        return True

    def targets(self) -> tuple[Counter, set[Key]]:
        """(the counts, the keys known quiet) for an accelerator that adds a quiet block itself (a key
        known quiet is counted already: such a block adds no key)."""
        return self._counts, self._closed

    def counted(self) -> None:
        """An accelerator added a block to the counts (see `targets`)."""
        if len(self._counts) > MAX_KEYS:
            self.flush()

    def _sample(self, key: Key, line: int, raw: bytes) -> None:
        if key not in self._wanted:
            return
        samples = self.summary.samples
        text = raw.decode("utf-8", "replace").rstrip("\r")
        for cls in self.info(key).classes:
            if cls not in SAMPLED:
                continue
            kept = samples.setdefault((self.product, cls), [])
            if len(kept) < MAX_SAMPLES:
                kept.append((self.source, line, text))
        self._wanted = {k for k in self._wanted if self._open(self.info(k))}

    def flush(self) -> None:
        summary = self.summary
        for key, n in self._counts.items():
            info = self.info(key)
            summary.scope(self.product, "all").add(info, key, n)
            if info.scope:
                summary.scope(self.product, info.scope).add(info, key, n)
        self._counts = Counter()
        self._infos = {}
        self._wanted = set()
        self._closed = set()


# ------------------------------------------------------------------ shared classification


def http_classes(status: str) -> list[str]:
    """The classes an HTTP status alone puts a record in."""
    found: list[str] = []
    if len(status) == 3 and status.isdigit() and status[0] == "5":
        found.append("server_errors")
        named = {"502": "bad_gateway", "503": "service_unavailable", "504": "gateway_timeout"}.get(status)
        if named:
            found.append(named)
    return found


def text(value: object) -> str:
    """A logged value as text (bytes are UTF-8, or cp1252 when they are not)."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8").strip()
        except UnicodeDecodeError:
            return value.decode("cp1252", "replace").strip()
    return str(value).strip()


BODY_REJECTED = frozenset({"408", "411", "413"})


def long_poll_classes(key: Key, failed: bool, status: str = "") -> list[str]:
    """A long-lived request's classes: its own (eas_ping...), long_poll, and long_poll_failed when it failed;
    an Outlook Anywhere channel refused for its body (408, 411, 413: a proxy that buffers the 1 GB
    RPC_IN_DATA / RPC_OUT_DATA body) is also rpc_body_rejected."""
    if not key[4]:
        return []
    found = [key[4], "long_poll", "long_poll_failed"] if failed or status in BODY_REJECTED else [key[4], "long_poll"]
    if key[4].startswith("rpc_") and status in BODY_REJECTED:
        found.append("rpc_body_rejected")
    return found


# ------------------------------------------------------------------ times

_MONTHS = {
    m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)
}


def clf_time(text: str) -> str:
    """`06/Feb/2009:12:14:14.655 +0100` (CLF, HAProxy) -> ISO 8601 UTC (without the zone: as logged)."""
    try:
        day, month, rest = text.split("/", 2)
        year, hh, mm, ss = rest[:4], rest[5:7], rest[8:10], rest[11:13]
        moment = datetime(int(year), _MONTHS[month], int(day), int(hh), int(mm), int(ss))
    except (ValueError, KeyError):
        return ""
    zone = text[-5:] if len(text) > 20 and text[-5] in "+-" else ""
    if zone[1:].isdigit():
        sign = 1 if zone[0] == "+" else -1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60)
        moment -= timedelta(seconds=offset)  # (utcfromtimestamp is deprecated from 3.12 on)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------ facts


def _listed(counter: Counter, limit: int = 30) -> list[str]:
    return [f"{value} {n}" for value, n in sorted(counter.items(), key=lambda vn: (-vn[1], str(vn[0])))[:limit]]


def _cite(sample: tuple[str, int, str]) -> str:
    return f"{sample[0]}:{sample[1]}"


def _scope_attrs(figures: Figures) -> dict[str, Any]:
    attrs: dict[str, object] = {
        "records": figures.records,
        "status_counts": _listed(figures.statuses),
        "code_counts": _listed(figures.codes),
    }
    for cls in CLASSES:
        attrs[cls] = figures.classes.get(cls, 0)
    for lp in LONG_POLLS:
        attrs[lp] = figures.classes.get(lp, 0)
    durations: Counter = Counter()
    for value, n in figures.durations.items():
        durations[f"{value[0]} {value[1]}s" if isinstance(value, tuple) else str(value)] += n
    attrs["long_poll_durations"] = _listed(durations, MAX_DURATIONS * len(LONG_POLLS))
    return attrs


def build_facts(
    summary: Summary, check: str | None = None, heartbeat: int | None = None
) -> tuple[list[Fact], dict[str, str]]:
    """One `proxy.status_summary` per product (subject PRODUCT:all) and per busiest scope (PRODUCT:scope:NAME);
    one `proxy.idle_timeout` per product and long-poll class with failed long polls."""
    facts: list[Fact] = []
    excerpts: dict[str, str] = {}
    source = summary.files[0] if len(summary.files) == 1 else f"{len(summary.files)} files"
    products = sorted({p for p, _ in summary.figures})
    for product in products:
        overall = summary.figures[(product, "all")]
        samples = {cls: cites for (p, cls), cites in summary.samples.items() if p == product}
        for cites in samples.values():
            for c in cites:
                excerpts[_cite(c)] = c[2]
        first, last = summary.times.get(product, ("", ""))
        attrs = _scope_attrs(overall)
        attrs.update(
            product=product,
            scope="all",
            files=len(summary.files),
            formats=sorted(summary.formats),
            bad_lines=summary.bad_lines,
            truncated_lines=summary.truncated,
            bad_line_samples=[f"{name}:{line}" for name, line in summary.bad_samples],
            partial=summary.partial,
            first_time=first or None,
            last_time=last or None,
            samples=[f"{cls} {_cite(c)}" for cls, cites in sorted(samples.items()) for c in cites],
        )
        cited = next((c for cls in CLASSES for c in samples.get(cls, ())), None)
        facts.append(
            make_fact(
                KIND,
                f"{product}:all",
                PROBE,
                source=cited[0] if cited else source,
                location=f"line {cited[1]}" if cited else None,
                check=check,
                **attrs,
            )
        )
        facts += idle.facts(product, overall.failed_durations, heartbeat, source, check)
        scoped = [(name, f) for (p, name), f in summary.figures.items() if p == product and name != "all"]
        scoped.sort(key=lambda nf: (-nf[1].records, nf[0]))
        for name, figures in scoped[:MAX_SCOPE_FACTS]:
            facts.append(
                make_fact(
                    KIND,
                    f"{product}:{name}",
                    PROBE,
                    source=source,
                    check=check,
                    product=product,
                    scope=name.split(":", 1)[0],
                    name=name.split(":", 1)[-1],
                    **_scope_attrs(figures),
                )
            )
    return facts, excerpts


def messages_note(count: int, product: str) -> str:
    return f"{count} line(s) are {product} messages, not traffic records (not counted)"


def iter_notes(summary: Summary) -> Iterable[str]:
    for source, line, message in summary.notes:
        yield f"{source}:{line}: {message}" if line else f"{source}: {message}"
    if summary.notes_dropped:
        yield f"... and {summary.notes_dropped} more problems"
