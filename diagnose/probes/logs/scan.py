"""Reading one log (or one byte range of one) into a `LogSummary`.

A W3C log is read in blocks of whole lines (128 KiB, read into one reused buffer). A clean block,
all records of the current layout, takes one of two fast ways, which give the same figures:

* the C accelerator (`_fastscan.scan_block`, built at install time; see `hatch_build.py`) checks,
  splits and counts the block in one pass: the key columns (destination, networks, action, status,
  rule) counted by distinct combination, the earliest and latest time, Outlook Anywhere records,
  and the records whose status needs a closer look, handed back with just the columns read below;
* in pure Python (no compiler at install, or DIAGNOSE_PURE_PYTHON=1), every line end is made a
  field of its own, so one `bytes.split` gives a flat list in which record i is
  fields[i*stride : i*stride+width] and each column is a slice; the key columns are counted with
  one `Counter` over `zip` of their slices.

Each distinct key combination is classified once in Python. Only the records that need more
(Status 64, client-visible failures, the first few of each notable code) are looked at one by one.
Blocks that are not clean (a header line, a line with the wrong number of fields, a control byte)
take the careful line-by-line path, which feeds the same counting code.
"""
from __future__ import annotations

import codecs
import csv
import io
import ipaddress
import os
import re
import typing
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from itertools import chain, compress, repeat
from operator import add, floordiv, itemgetter, mul, not_, or_
from typing import IO, NamedTuple

from diagnose.bounds import MAX_LINE_BYTES
from diagnose.compat import UTC, ZoneInfo, zip_strict
from diagnose.probes.logs.codes import STATUS64, ResultCode, result_code
from diagnose.probes.logs.layout import (
    ACTION_STRINGS,
    CANON,
    FIXED_FIREWALL,
    FIXED_WEB,
    NOT_CONNECTIONS,
    WEB_FILTERINFO,
    Layout,
    LogKind,
    normalise_action,
)
from diagnose.probes.logs.summary import (
    MAX_CODE_SAMPLES,
    MAX_NAMES,
    MAX_SAMPLES,
    OA_LONG_MS,
    SAMPLED_GROUPS,
    LogSummary,
)

try:  # the optional C accelerator (built by hatch_build.py); the pure-Python path is the reference
    from diagnose.probes.logs import _fastscan
except ImportError:  # pragma: no cover - depends on the build
    _fastscan = None
if os.environ.get("DIAGNOSE_PURE_PYTHON"):  # for comparing the two paths (tests, bench/logs.py)
    _fastscan = None

# (lines, new keys, (lo date, lo time), (hi date, hi time), OA records, long OA, rows, starts, columns)
_BlockScan = typing.Tuple[
    int, int, typing.Tuple[typing.Optional[bytes], typing.Optional[bytes]],
    typing.Tuple[typing.Optional[bytes], typing.Optional[bytes]], int, int,
    typing.List[int], typing.List[int], typing.List[typing.List[bytes]],
]  # fmt: skip
# the columns `_detail_rows` reads besides the keys
_PICKED = ("date", "time", "source", "orig_client", "computer", "username")

BLOCK = 1 << 17  # small enough that a block's fields stay in the CPU cache while it is counted
MAX_KEYS = 65536  # distinct keys (and cached times, clients) kept before counts are folded in
KEY_FIELDS = (
    "source",
    "dest",
    "src_net",
    "dst_net",
    "action",
    "status",
    "http_status",
    "rule",
    "record_type",
)
OA_METHODS = frozenset({b"RPC_IN_DATA", b"RPC_OUT_DATA"})
_RPCPROXY = re.compile(rb"/rpc/rpcproxy\.dll", re.IGNORECASE)
_RPCPROXY_TEXT = b"/rpc/rpcproxy.dll"
_GARBAGE = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_GARBAGE_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])  # what _GARBAGE matches, for translate
# Codes that only say a connection was torn down; a failed request with one of them is not by itself
# an error the client saw.
_NOISE_GROUPS = frozenset({"status64", "teardown", "graceful", "auth_challenge"})
_INTERNAL_NET_SKIP = frozenset({"", "-", "external", "local host", "vpn clients", "quarantined vpn clients"})
_NO_CLIENT = frozenset({"", "-", "0.0.0.0", "::", "0"})
_NO_NAME = frozenset({"", "-", "anonymous"})


class NotALog(Exception):
    """The input is not a TMG / ISA log in any known format."""


@dataclass(frozen=True)
class Site:
    """What the probe knows about the site, for deciding legs and local times."""

    tmg_addresses: frozenset[str] = frozenset()
    internal_addresses: frozenset[str] = frozenset()
    tz: str | None = None

    @property
    def zone(self) -> ZoneInfo | None:
        return _zone(self.tz) if self.tz else None


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


class KeyInfo(NamedTuple):
    action: str
    code: ResultCode
    leg: str
    server: str
    rule: str
    metrics: tuple[str, ...]
    s64: bool
    client_failure: bool
    sample_group: str
    web: bool
    client_from: str  # where the client's address is read: "source", "original" or "source+original"
    flood: bool  # a denial by flood mitigation


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    try:
        return value.decode("utf-8").strip()
    except UnicodeDecodeError:
        return value.decode("cp1252", "replace").strip()


@lru_cache(maxsize=65536)
def split_address(text: str) -> tuple[str, str]:
    """`10.0.0.5:443` -> (10.0.0.5, 443); `[fe80::1]:443` and bare IPv6 handled; no port -> ''."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, rest.lstrip(":")
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    if text.count(":") > 1:
        try:
            ipaddress.ip_address(text)
            return text, ""
        except ValueError:
            host, _, port = text.rpartition(":")
            return host, port
    return text, ""


@lru_cache(maxsize=65536)
def _is_global(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


def decide_leg(site: Site, src: str, dst: str, src_net: str, dst_net: str) -> str:
    """Which leg a record is on: "server" (TMG to the published server), "client" or "unknown".

    Known facts first: a source that is TMG (a profile/--tmg address, or TMG's own network "Local
    Host") or a destination that is a profile internal address is the server leg. A destination that
    is TMG itself is the client leg. Heuristics when neither is known: a destination network named
    by TMG as anything but External / Local Host / VPN clients (Internal, Perimeter, ...) is an
    internal server, so the server leg; otherwise an External source network, or a public source
    address when no network is logged, is a client; a private destination address with no network
    logged is taken as an internal server. Anything else (e.g. forward-proxy traffic from an
    internal client to the Internet) is "unknown".
    """
    sn, dn = src_net.lower(), dst_net.lower()
    if src in site.tmg_addresses or sn == "local host":
        return "server"
    if dst and dst in site.internal_addresses:
        return "server"
    if (dst and dst in site.tmg_addresses) or dn == "local host":
        return "client"
    if dn not in _INTERNAL_NET_SKIP:
        return "server"
    if sn == "external" or (not sn and src and _is_global(src)):
        return "client"
    if not dn and dst and not _is_global(dst) and not site.internal_addresses:
        try:
            ipaddress.ip_address(dst)
            return "server"
        except ValueError:
            pass
    return "unknown"


# ------------------------------------------------------------------ time

_DATETIME = re.compile(
    r"(\d{1,4})([./-])(\d{1,2})[./-](\d{1,4})[ T,]+(\d{1,2}):(\d{2}):(\d{2})(?:\.\d+)?\s*([AaPp][Mm])?"
)


def parse_datetime(text: str) -> datetime | None:
    """Dates as the product and Windows locales write them: 2011-09-28, 9/28/2011, 28.09.2011, 28/09/2011."""
    m = _DATETIME.search(text)
    if not m:
        return None
    a, sep, b, c, hh, mm, ss, ampm = m.groups()
    ai, bi, ci = int(a), int(b), int(c)
    if len(a) == 4:
        year, month, day = ai, bi, ci
    elif sep == "." or (sep == "/" and ai > 12):
        day, month, year = ai, bi, ci
    else:
        month, day, year = ai, bi, ci
    hour = int(hh)
    if ampm:
        hour = hour % 12 + (12 if ampm.lower() == "pm" else 0)
    try:
        return datetime(year, month, day, hour, int(mm), int(ss))
    except ValueError:
        return None


def to_utc(moment: datetime, zone: ZoneInfo | None) -> datetime:
    if zone is None:
        return moment
    return moment.replace(tzinfo=zone).astimezone(UTC).replace(tzinfo=None)


def clock_seconds(hours: str | bytes, minutes: str | bytes, seconds: str | bytes) -> int | None:
    """Seconds since midnight of a logged time of day, or None when a field is not a time of day
    (`25:00:00`, `-1`, `nan`, a 400-digit number: damaged records are not placed in time)."""
    try:
        h, m, s = int(hours), int(minutes), float(seconds)
    except ValueError:
        return None
    if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 61):  # also false for nan
        return None
    return h * 3600 + m * 60 + int(s)


@lru_cache(maxsize=4096)
def _day_epoch(date: bytes) -> int | None:
    try:
        d = datetime.strptime(date.decode("ascii"), "%Y-%m-%d")
    except (UnicodeDecodeError, ValueError):
        return None
    if d.year < 1970:
        return None  # before any TMG log; and the timeline could not print it on every platform
    return int((d - datetime(1970, 1, 1)).total_seconds())


# ------------------------------------------------------------------ the scanner


class Scanner:
    """Feeds records of one layout at a time into a summary; `source` names the file for citations.

    Records arrive as columns: one flat list of fields, `stride` per record (`consume`). The key
    columns of every record are counted with one `Counter` (a C loop over `zip` of the columns);
    the counts are turned into figures once per distinct key, when the layout changes and at the
    end (`flush`). Only the records that need more (Status 64, client-visible failures, the first
    few of each notable code) are looked at one by one.
    """

    def __init__(self, summary: LogSummary, site: Site, source: str) -> None:
        self.summary = summary
        self.site = site
        self.source = source
        self.layout: Layout | None = None
        self._infos: dict[tuple[bytes | None, ...], KeyInfo] = {}
        self._counts: Counter[tuple[bytes | None, ...]] = Counter()
        self._detail_status: frozenset[bytes | None] = frozenset()
        self._detail_all = False
        self._samples_open: set[str] = set(SAMPLED_GROUPS)
        self._clients: dict[bytes, str] = {}
        self._names_seen: set[bytes | None] = set()
        self.key_fields: tuple[str, ...] = ()
        self.key_index: tuple[int, ...] = ()
        self.k_status = -1
        self._pick_names: tuple[str, ...] = ()
        self._columns: tuple[int, int, int, int, int] = (-1, -1, -1, -1, -1)
        self._pick: tuple[int, ...] = ()
        self._status_column = -1

    # -- layout
    def set_layout(self, layout: Layout) -> None:
        if layout == self.layout:
            return
        self.flush()
        self.layout = layout
        self._infos = {}
        self._detail_status = frozenset()
        self._detail_all = False
        idx = layout.index
        present = [f for f in KEY_FIELDS if f in idx]
        if "src_net" in idx:
            # TMG's own addresses are by definition its Local Host network: with the networks logged,
            # the source address adds nothing to the leg (see decide_leg) and would only multiply the
            # counted keys.
            present = [f for f in present if f != "source"]
        self.key_fields = tuple(present)
        self.key_index = tuple(idx[f] for f in present)
        self.k_status = present.index("status") if "status" in present else -1
        # what `consume_block` hands the accelerator for this layout (-1: column absent)
        date, time = (idx["date"], idx["time"]) if "date" in idx and "time" in idx else (-1, -1)
        web = layout.kind is not LogKind.FIREWALL
        self._pick_names = tuple(name for name in _PICKED if name in idx)
        self._columns = (
            date, time, idx.get("method", -1) if web else -1, idx.get("uri", -1) if web else -1,
            idx.get("time_taken", -1),
        )  # fmt: skip
        self._pick = self.key_index + tuple(idx[name] for name in self._pick_names)
        self._status_column = self.key_index[self.k_status] if self.k_status >= 0 else -1

    # -- classification of one distinct key
    def info(self, key: tuple[bytes | None, ...]) -> KeyInfo:
        found = self._infos.get(key)
        if found is not None:
            return found
        assert self.layout is not None
        values = {f: _text(v) for f, v in zip_strict(self.key_fields, key)}
        kind = self.layout.kind
        if kind is LogKind.MIXED:
            web = not values.get("record_type", "").lower().startswith("firewall")
        else:
            web = kind is LogKind.WEB
        action = normalise_action(values.get("action", "-"))
        code = result_code(values.get("status", ""))
        http = result_code(values.get("http_status", "")) if values.get("http_status") else None
        src, _ = split_address(values.get("source", ""))
        dst = split_address(values.get("dest", ""))[0]
        leg = decide_leg(self.site, src, dst, values.get("src_net", ""), values.get("dst_net", ""))
        rule = values.get("rule", "")
        s64 = code.value == STATUS64
        value = code.value
        http_value = http.value if http is not None else None
        client_failure = False
        if (
            web
            and not s64
            and (
                (
                    value is not None
                    and (500 <= value <= 599 or (12000 <= value <= 12999 and code.group != "auth_challenge"))
                )
                or (http_value is not None and 500 <= http_value <= 599)
                or (action == "failed" and value not in (None, 0) and code.group not in _NOISE_GROUPS)
            )
        ):
            client_failure = True
        metrics: list[str] = []
        if action not in NOT_CONNECTIONS:
            metrics.append("connections")
        metrics.append(f"leg_{leg}")
        group = code.group
        if s64:
            metrics += ["status64_count", f"status64_{leg}_leg"]
        cert_500 = group in ("cert", "cert_name_mismatch") and (
            http_value in (None, 500) and (web or http_value == 500)
        )
        named = {
            "host_not_found": "host_not_found",
            "timed_out": "timed_out",
            "refused": "refused",
            "address_in_use": "address_in_use",
            "no_buffers": "no_buffers",
            "connection_killed": "connection_killed",
            "cert_name_mismatch": "cert_name_mismatch",
            "flood": "flood_denials",
        }
        if group in named:
            metrics.append(named[group])
        if cert_500:
            metrics.append("cert_errors_500")
        sample_group = named.get(group, "")
        if cert_500 and not sample_group:
            sample_group = "cert_errors_500"
        if client_failure and not sample_group:
            sample_group = "client_error"
        server = dst if dst not in ("", "-") else ""  # the server's address, without the port
        found = KeyInfo(
            action,
            code,
            leg,
            server,
            rule if rule not in ("", "-") else "",
            tuple(metrics),
            s64,
            client_failure,
            sample_group,
            web,
            "source" if web else ("source+original" if leg == "client" else "original"),
            group == "flood",
        )
        self._infos[key] = found
        return found

    def _wants_detail(self, info: KeyInfo) -> bool:
        # every flood denial is looked at, for its source address (LogSummary.flood_from)
        return info.s64 or info.client_failure or info.sample_group in self._samples_open or info.flood

    def _refresh_detail(self) -> None:
        """Which status values mark the records that must be read one by one."""
        wanted = [key for key in self._counts if self._wants_detail(self.info(key))]
        if self.k_status < 0:
            self._detail_all = bool(wanted)
            self._detail_status = frozenset()
        else:
            self._detail_status = frozenset(key[self.k_status] for key in wanted)

    # -- counting
    def consume(self, fields: list[bytes], stride: int, lineno: Callable[[int], int]) -> None:
        """Count a batch of records of the current layout, given as one flat list of fields with
        `stride` fields per record (the layout's width, or one more when a separator column follows
        each record); `lineno(i)` gives record i's line."""
        if not fields or self.layout is None:
            return
        n = len(fields) // stride
        counts = self._counts
        key_cols = [fields[k::stride] for k in self.key_index]
        before = len(counts)
        if len(key_cols) == 1:
            counts.update(zip(key_cols[0]))
        else:
            counts.update(zip_strict(*key_cols))
        if len(counts) != before:
            self._refresh_detail()
        idx = self.layout.index
        if self._detail_status or self._detail_all:
            if self.k_status >= 0:
                rows = list(compress(range(n), map(self._detail_status.__contains__, key_cols[self.k_status])))
            else:
                rows = list(range(n))
            if rows:
                self._details(fields, stride, rows, key_cols, lineno)
        if "date" in idx and "time" in idx:
            dates = fields[idx["date"] :: stride]
            times = fields[idx["time"] :: stride]
            first_day = dates[0]
            if dates.count(first_day) == n:  # the usual case: a daily log file
                lo, hi = (first_day, min(times)), (first_day, max(times))
            else:
                stamps = list(zip_strict(dates, times))
                lo, hi = min(stamps), max(stamps)
            self.summary.see_time(_iso_stamp(*lo), _iso_stamp(*hi))
        if self.layout.kind is not LogKind.FIREWALL:
            self._outlook_anywhere(fields, stride, n)
        if len(self._infos) > MAX_KEYS:
            self.flush()
            self._infos = {}
            self._refresh_detail()

    def consume_block(self, block: bytes, first_line: int) -> int:
        """Count a block of whole lines with the C accelerator; returns the number of lines, or -1
        (nothing counted) when the block needs the careful path. Gives the same figures as
        splitting the block and calling `consume`."""
        layout = self.layout
        if _fastscan is None or layout is None or layout.width > _fastscan.MAX_WIDTH:
            return -1
        date, time, method, uri, taken = self._columns
        pick_names, pick, status = self._pick_names, self._pick, self._status_column

        def scan(counts: Counter[tuple[bytes | None, ...]] | None) -> _BlockScan | None:
            detail = tuple(self._detail_status) if self._detail_status else None
            every = self._detail_all
            if detail is not None and len(detail) > _fastscan.MAX_DETAIL:
                detail, every = None, True  # too many values to match: all records, each looked at
            return _fastscan.scan_block(  # type: ignore[no-any-return]
                block, layout.width, self.key_index, counts, date, time, method, uri, taken,
                OA_LONG_MS, status, detail, every, pick,
            )  # fmt: skip

        got = scan(self._counts)
        if got is None:
            return -1
        n, new_keys, lo, hi, oa, oa_long, rows, starts, cols = got
        if new_keys:
            before = (self._detail_status, self._detail_all)
            self._refresh_detail()
            if (self._detail_status, self._detail_all) != before:
                again = scan(None)
                assert again is not None
                rows, starts, cols = again[6:]
        if rows:
            nk = len(self.key_index)
            named = dict(zip_strict(pick_names, cols[nk:]))
            at = dict(zip_strict(rows, starts))

            def text(i: int) -> bytes:
                return block[at[i] : block.index(b"\n", at[i])]

            keys = zip_strict(*cols[:nk])
            self._detail_rows(rows, keys, named.get, text, first_line.__add__)
        if lo[0] is not None:
            self.summary.see_time(_iso_stamp(*lo), _iso_stamp(*hi))
        if oa:
            self.summary.outlook_anywhere += oa
            self.summary.outlook_anywhere_long += oa_long
        if len(self._infos) > MAX_KEYS:
            self.flush()
            self._infos = {}
            self._refresh_detail()
        return n

    def flush(self) -> None:
        """Turn the counted keys into figures of the summary."""
        if not self._counts:
            return
        summary = self.summary
        total = summary.scope("all", "all")
        for key, n in self._counts.items():
            info = self.info(key)
            summary.records += n
            summary.action_status[(info.action, info.code.label)] += n
            scopes = [total, summary.scope("leg", info.leg)]
            if info.server and info.leg != "unknown":  # a published server, or TMG's own listener
                scopes.append(summary.scope("server", info.server))
            if info.rule:
                scopes.append(summary.scope("rule", info.rule))
            for scope in scopes:
                for metric in info.metrics:
                    scope[metric] += n
            if info.s64:
                summary.s64_actions[info.action] += n
        self._counts = Counter()

    def _outlook_anywhere(self, fields: list[bytes], stride: int, n: int) -> None:
        idx = self.layout.index if self.layout else {}
        flags: list[bool] | None = None
        if "method" in idx:
            flags = list(map(OA_METHODS.__contains__, fields[idx["method"] :: stride]))
        if "uri" in idx:
            uris = fields[idx["uri"] :: stride]
            # only the records not already marked by their method need their URI read
            rest = uris if flags is None else list(compress(uris, map(not_, flags)))
            if _RPCPROXY_TEXT in b"\n".join(rest).lower():
                by_uri = list(map(bool, map(_RPCPROXY.search, uris)))
                flags = by_uri if flags is None else list(map(or_, flags, by_uri))
        if not flags:
            return
        found = sum(flags)
        if not found:
            return
        self.summary.outlook_anywhere += found
        if "time_taken" in idx:
            taken = list(compress(fields[idx["time_taken"] :: stride], flags))
            try:
                self.summary.outlook_anywhere_long += sum(map(OA_LONG_MS.__le__, map(int, taken)))
            except ValueError:
                self.summary.outlook_anywhere_long += sum(1 for t in taken if _int(t) >= OA_LONG_MS)

    def _details(
        self,
        fields: list[bytes],
        stride: int,
        rows: list[int],
        key_cols: list[list[bytes]],
        lineno: Callable[[int], int],
    ) -> None:
        """Status 64 records, client-visible failures and samples, one by one (rows of flat fields)."""
        assert self.layout is not None
        idx = self.layout.index
        width = self.layout.width
        pick: Callable[[list[bytes]], Sequence[bytes]]
        if len(rows) == 1:
            only = rows[0]

            def pick(column: list[bytes]) -> Sequence[bytes]:
                return (column[only],)

        else:
            pick = itemgetter(*rows)  # type: ignore[assignment]

        def column(name: str) -> Sequence[bytes] | None:
            return pick(fields[idx[name] :: stride]) if name in idx else None

        def text(i: int) -> bytes:
            return b"\t".join(fields[i * stride : i * stride + width])

        keys = zip_strict(*map(pick, key_cols)) if len(key_cols) > 1 else zip(pick(key_cols[0]))
        self._detail_rows(rows, keys, column, text, lineno)

    def _detail_rows(
        self,
        rows: Sequence[int],
        keys: Iterable[tuple[bytes | None, ...]],
        column: Callable[[str], Sequence[bytes] | None],
        text: Callable[[int], bytes],
        lineno: Callable[[int], int],
    ) -> None:
        """The per-record work of `_details`: `rows` are record numbers within the batch, `keys` their
        key-column values, `column(name)` a column's values of just these rows (None when the layout
        lacks it), `text(row)` a record's line."""
        summary = self.summary
        infos = map(self._infos.__getitem__, keys)
        count = len(rows)
        none: list[None] = [None] * count
        whens: Sequence[int | None] = none
        dates, times = column("date"), column("time")
        if dates is not None and times is not None:
            whens = self._whens(dates, times)
        sources: Sequence[bytes | None] = column("source") or none
        originals: Sequence[bytes | None] = column("orig_client") or none
        computers: Sequence[bytes | None] = column("computer") or none
        users: Sequence[bytes | None] = column("username") or none
        seen = self._names_seen
        s64_whens: list[int] = []
        s64_events = summary.s64_events
        failure_events = summary.failure_events
        open_groups = self._samples_open
        known = self._clients.get
        flood: list[bytes] = []
        for i, info, when, source, original, computer, user in zip_strict(
            rows, infos, whens, sources, originals, computers, users):
            s64 = info.s64
            group = info.sample_group
            if group and group not in open_groups:
                group = ""
            if info.flood:  # the address the denied connection came from
                flood.append(source if source not in (None, b"-", b"") else original or b"")
            if not (s64 or info.client_failure or group):
                continue
            if computer not in seen or user not in seen:
                self._names(computer, user, cited=False)
            if when is not None:
                client = ""
                if source is not None and info.client_from != "original":
                    client = known(source)
                    if client is None:
                        client = self._client(source)
                if not client and original is not None and info.client_from != "source":
                    client = known(original)
                    if client is None:
                        client = self._client(original)
                if s64:
                    s64_whens.append(when)
                    if not client:
                        summary.s64_no_client += 1
                    elif not _keep_time(summary, s64_events, client, when):
                        summary.s64_unchecked += 1
                elif client and info.client_failure and not _keep_time(summary, failure_events, client, when):
                    summary.failures_unchecked += 1
            elif s64:
                summary.s64_unchecked += 1  # no time logged: it cannot be set beside client errors
            if s64 and len(summary.samples) < MAX_SAMPLES:
                summary.samples.append((self.source, lineno(i), _text(text(i))))
                self._names(computer, user, cited=True)
            if group:
                summary.cite(group, (self.source, lineno(i), _text(text(i))))
                self._names(computer, user, cited=True)
                if len(summary.code_samples[group]) >= MAX_CODE_SAMPLES:
                    open_groups.discard(group)
                    self._refresh_detail()
        if s64_whens:
            summary.s64_minutes.update(map(floordiv, s64_whens, repeat(60)))
        for raw, n in Counter(map(_without_port, flood)).items():
            summary.flood_from(self._client(raw), n)

    def _names(self, computer: bytes | None, user: bytes | None, cited: bool) -> None:
        """Note the TMG computer and the user of a record looked at one by one: always for a cited
        record (the redactor must know the names in its excerpt), otherwise up to MAX_NAMES each."""
        seen = self._names_seen
        if len(seen) > 4 * MAX_NAMES:
            seen.clear()
        summary = self.summary
        if computer is not None:
            seen.add(computer)
            name = _text(computer)
            if name not in _NO_NAME and (cited or len(summary.computers) < MAX_NAMES):
                summary.computers.add(name)
        if user is not None:
            seen.add(user)
            name = _text(user).rstrip("?")  # "?": sent but not authenticated
            if name.lower() not in _NO_NAME and (cited or len(summary.users) < MAX_NAMES):
                summary.users.add(name)

    def _whens(self, dates: Sequence[bytes], times: Sequence[bytes]) -> Sequence[int | None]:
        """Epoch seconds of (date, time) pairs; the usual `HH:MM:SS` times of one day are converted
        all together, without a Python step per record."""
        parts = b":".join(times).split(b":")
        if len(parts) == 3 * len(times):
            try:
                numbers = list(map(int, parts))
            except ValueError:
                numbers = []
            if numbers and (min(numbers) < 0 or max(numbers[0::3]) > 23 or max(numbers[1::3]) > 59
                            or max(numbers[2::3]) > 60):
                numbers = []  # some record is no time of day: the careful way below leaves it out
            if numbers:
                hours = map(mul, numbers[0::3], repeat(3600))
                minutes = map(mul, numbers[1::3], repeat(60))
                seconds = map(add, map(add, hours, minutes), numbers[2::3])
                first = dates[0]
                if dates.count(first) == len(dates):
                    day = _day_epoch(first)
                    if day is not None:
                        return list(map(add, seconds, repeat(day)))
        return list(map(self._epoch, dates, times))

    def _epoch(self, date: bytes, time: bytes) -> int | None:
        day = _day_epoch(date)
        if day is None:
            return None
        parts = time.split(b":")
        if len(parts) != 3:
            return None
        clock = clock_seconds(*parts)
        return None if clock is None else day + clock

    def _client(self, raw: bytes) -> str:
        client = self._clients.get(raw)
        if client is None:
            client = split_address(_text(raw))[0]
            if client in _NO_CLIENT:
                client = ""
            if len(self._clients) > MAX_KEYS:
                self._clients.clear()
            self._clients[raw] = client
        return client

    def consume_rows(self, rows: list[list[bytes]], lineno: Callable[[int], int]) -> None:
        """Count records split one by one (each exactly the layout's width)."""
        if rows and self.layout is not None:
            self.consume(list(chain.from_iterable(rows)), self.layout.width, lineno)


def _without_port(raw: bytes) -> bytes:
    """`ADDR:PORT` -> ADDR for IPv4 (the usual case, cheaply, so that addresses repeat); anything
    else is left to `split_address`."""
    return raw[: raw.index(b":")] if raw.count(b":") == 1 else raw


def _keep_time(summary: LogSummary, events: dict[str, array[int]], client: str, when: int) -> bool:
    """Keep a client's event time for the coincidence check, unless the summary holds its maximum."""
    if summary.event_times >= summary.max_event_times:
        return False
    times_of = events.get(client)
    if times_of is None:
        times_of = events[client] = array("q")
    times_of.append(when)
    summary.event_times += 1
    return True


def _int(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        return -1


def _iso_stamp(date: bytes, time: bytes) -> str:
    try:
        return f"{date.decode('ascii')}T{time.decode('ascii')}Z"
    except (UnicodeDecodeError, AttributeError):
        return ""


# ------------------------------------------------------------------ byte streams and encodings


def utf16_encoding(head: bytes) -> str | None:
    """The UTF-16 flavour of a file from its first bytes, or None for UTF-8 / single-byte ANSI."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if len(head) >= 4 and head[1:2] == b"\x00" and head[3:4] == b"\x00" and head[0:1] != b"\x00":
        return "utf-16-le"
    if len(head) >= 4 and head[0:1] == b"\x00" and head[2:3] == b"\x00" and head[1:2] != b"\x00":
        return "utf-16-be"
    return None


def decoded_blocks(stream: IO[bytes], first: bytes = b"") -> Iterator[bytes]:
    """UTF-8 (or single-byte ANSI) blocks from a stream in any of the encodings TMG files come in."""
    head = first + stream.read(max(0, 4096 - len(first)))
    if head.startswith(codecs.BOM_UTF8):
        head = head[3:]
    encoding = utf16_encoding(head)
    if encoding is None:
        yield head
        while block := stream.read(BLOCK):
            yield block
        return
    decoder = codecs.getincrementaldecoder(encoding)("replace")
    yield decoder.decode(head).encode("utf-8")
    while block := stream.read(BLOCK):
        yield decoder.decode(block).encode("utf-8")
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail.encode("utf-8")


LongLine = typing.Callable[[int], None]  # told the number (1-based, in the lines handed out) of a line skipped


def long_line_note(summary: LogSummary, source: str, first_line: int = 1) -> LongLine:
    """What a line splitter calls for a line over the bound: a bad line cited as `file:line`."""

    def note(number: int) -> None:
        summary.bad_line(source, first_line - 1 + number,
                         f"line longer than {MAX_LINE_BYTES:,} bytes skipped (bound: diagnose.bounds.MAX_LINE_BYTES)")

    return note


def line_blocks(blocks: Iterable[bytes], long_line: LongLine | None = None,
                limit: int = MAX_LINE_BYTES) -> Iterator[tuple[bytes, bool]]:
    """Blocks of whole lines; the last block (flag True) may end without a newline.

    A line longer than `limit` bytes is never held whole: it is handed out as an empty line (so line
    numbers stay right) and `long_line` is told its number. Blocks must not be longer than `limit`."""
    carry = b""
    seen = 0  # line ends handed out so far
    skipping = False  # inside a line already over the bound: drop up to its end
    for block in blocks:
        if skipping:
            nl = block.find(b"\n")
            if nl < 0:
                continue
            skipping = False
            seen += 1
            yield b"\n", False
            block = block[nl + 1 :]
        data = carry + block if carry else block
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) > limit:
                skipping, carry = True, b""
                if long_line is not None:
                    long_line(seen + 1)
                continue
            carry = data
            continue
        if carry:
            first = data.find(b"\n")
            if first > limit:  # the line carried over ends here, too long
                if long_line is not None:
                    long_line(seen + 1)
                data = data[first:]
                cut -= first
        carry = data[cut + 1 :]
        out = data[: cut + 1]
        seen += out.count(b"\n")
        yield out, False
    if skipping:
        yield b"", True
        return
    yield carry, True


def stream_line_blocks(
    stream: IO[bytes], first: bytes = b"", limit: int | None = None, long_line: LongLine | None = None,
    line_limit: int = MAX_LINE_BYTES,
) -> Iterator[tuple[bytes, bool]]:
    """`line_blocks` straight from a byte stream (at most `limit` bytes after `first`): read into
    one reused buffer, so each block of whole lines is copied once, and no block is allocated and
    faulted in afresh for every read. A line longer than `line_limit` is handed out as an empty line
    and `long_line` told its number (see `line_blocks`); the buffer never grows much past the bound."""
    size = BLOCK
    buf = bytearray(size)
    have = 0
    early = first  # read before (format detection); handed out first, in blocks like the rest
    left = limit
    seen = 0  # line ends handed out so far
    skipping = False  # inside a line already over the bound: drop up to its end
    while True:
        got = 0
        if early:
            got = min(size - have, len(early))
            buf[have : have + got] = early[:got]
            early = early[got:]
        else:
            want = size - have if left is None else min(size - have, left)
            if want > 0:
                with memoryview(buf) as view:
                    got = stream.readinto(view[have : have + want]) or 0  # type: ignore[attr-defined]
            if left is not None:
                left -= got
        if got == 0:
            yield (b"" if skipping else bytes(buf[:have])), True
            return
        have += got
        if skipping:
            nl = buf.find(b"\n", 0, have)
            if nl < 0:
                have = 0
                continue
            skipping = False
            buf[: have - nl] = buf[nl:have]  # the skipped line becomes an empty one
            have -= nl
        cut = buf.rfind(b"\n", 0, have)
        if cut < 0:
            if have == size:
                if size > line_limit:  # a line over the bound: skip to its end
                    skipping, have = True, 0
                    if long_line is not None:
                        long_line(seen + 1)
                    continue
                buf.extend(bytes(size))  # a line longer than the buffer: make room
                size *= 2
            continue
        if size > BLOCK:  # the buffer grew for a long line: is it over the bound?
            nl = buf.find(b"\n", 0, have)
            if nl > line_limit:
                if long_line is not None:
                    long_line(seen + 1)
                buf[: have - nl] = buf[nl:have]
                have -= nl
                cut -= nl
        with memoryview(buf) as view:
            block = bytes(view[: cut + 1])
        tail = have - cut - 1
        buf[:tail] = buf[cut + 1 : have]
        have = tail
        if size > BLOCK and have < BLOCK // 2:  # back to the usual buffer once the long line is gone
            del buf[BLOCK:]
            size = BLOCK
        seen += block.count(b"\n")
        yield block, False


def bounded_blocks(blocks: Iterable[bytes], long_line: LongLine | None = None) -> Iterator[bytes]:
    """Raw blocks with every line over the bound made empty (for readers that split lines themselves)."""
    for block, _last in line_blocks(blocks, long_line):
        if block:
            yield block


# ------------------------------------------------------------------ W3C (and syslog-relayed W3C)

_SYSLOG_TAG = re.compile(rb"ISA(Web|FWS)Log\s+(?:\d+\s+)?")


def scan_w3c(
    scanner: Scanner, blocks: Iterable[tuple[bytes, bool]], first_line: int = 1, layout: Layout | None = None
) -> int:
    """Scan W3C extended lines; returns the number of physical lines read."""
    if layout is not None:
        scanner.set_layout(layout)
    line = first_line
    for block, last in blocks:
        if not block:
            continue
        n_lines = _fast_block(scanner, block, line)
        if n_lines < 0:
            n_lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            _slow_block(scanner, block, line, last)
        line += n_lines
    return line - first_line


def _fast_block(scanner: Scanner, block: bytes, first_line: int) -> int:
    """A block of whole lines, all records of the current layout, split in one go into columns;
    returns the number of lines, or -1 when the block needs the careful path."""
    layout = scanner.layout
    if layout is None or not block.endswith(b"\n"):
        return -1
    if _fastscan is not None:
        return scanner.consume_block(block, first_line)
    if len(block.translate(None, _CONTROL)) != len(block):  # a control byte: the careful path says where
        return -1
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
        if b"\r" in block:
            return -1
    width = layout.width
    stride = width + 1
    # Every line end becomes a field of its own (b"\n", the only field that can hold one), so the
    # whole block splits into one list: record i is fields[i*stride : i*stride+width]. The split is
    # exact when there are n*stride fields (plus the empty one after the last TAB) and every
    # stride-th field is a line end: then each of the n lines holds exactly `width` fields.
    spread = block.replace(b"\n", b"\t\n\t")
    n = (len(spread) - len(block)) >> 1  # the line ends, counted by the replacement
    fields = spread.split(b"\t")
    del spread
    if len(fields) != n * stride + 1 or fields[width::stride].count(b"\n") != n:
        return -1
    fields.pop()
    if b"\n#" in b"\n" + b"\n".join(fields[0::stride]):  # a header or comment line: the careful path
        return -1
    scanner.consume(fields, stride, first_line.__add__)
    return n


def _slow_block(scanner: Scanner, block: bytes, first_line: int, last: bool) -> None:
    summary = scanner.summary
    pending: list[list[bytes]] = []
    numbers: list[int] = []

    def flush() -> None:
        if pending:
            scanner.consume_rows(pending, numbers.__getitem__)
            pending.clear()
            numbers.clear()

    raw_lines = block.split(b"\n")
    ends_clean = block.endswith(b"\n")
    if ends_clean:
        raw_lines.pop()
    for offset, raw in enumerate(raw_lines):
        number = first_line + offset
        text = raw[:-1] if raw.endswith(b"\r") else raw
        if not text.strip():
            continue
        final_unterminated = last and not ends_clean and offset == len(raw_lines) - 1
        relayed = _SYSLOG_TAG.search(text) if b"ISA" in text else None
        if relayed:
            text = text[relayed.end() :]
        if text.startswith(b"#"):
            if text[:8].lower() == b"#fields:":
                flush()
                names = [n.strip() for n in _text(text[8:]).split("\t")]
                if len(names) == 1:
                    names = _text(text[8:]).split()
                new = Layout.from_names(names)
                if not new.looks_like_log():
                    summary.note(scanner.source, number, "#Fields header without action/status fields")
                scanner.set_layout(new)
            continue
        if _GARBAGE.search(text):
            if final_unterminated:
                summary.bad_line(scanner.source, number, "truncated last line (binary data) skipped", True)
            else:
                summary.bad_line(scanner.source, number, "binary garbage skipped")
            continue
        parts = text.split(b"\t")
        layout = scanner.layout
        if relayed and (layout is None or len(parts) != layout.width):
            fixed = (FIXED_WEB if relayed.group(1) == b"Web" else FIXED_FIREWALL).get(len(parts))
            if fixed is not None:
                flush()
                scanner.set_layout(fixed)
                layout = fixed
        if layout is None:
            summary.bad_line(scanner.source, number, "record before any #Fields header")
            continue
        if len(parts) != layout.width:
            if final_unterminated and len(parts) < layout.width:
                summary.bad_line(
                    scanner.source,
                    number,
                    f"truncated last line ({len(parts)} of {layout.width} fields)",
                    True,
                )
            else:
                summary.bad_line(
                    scanner.source, number, f"{len(parts)} fields where the #Fields header has {layout.width}"
                )
            continue
        pending.append(parts)
        numbers.append(number)
    flush()


# ------------------------------------------------------------------ records converted to canonical fields


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
    m = re.fullmatch(
        r"([0-9A-Fa-f]{8})-([0-9A-Fa-f]{4})-([0-9A-Fa-f]{4})-([0-9A-Fa-f]{4})-([0-9A-Fa-f]{12})", text
    )
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
            scanner.summary.bad_line(
                scanner.source, number, problem, truncated=problem.startswith("truncated")
            )
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


COLLAPSED_LAYOUT = Layout.from_names(
    ["action", "result code", "log record type", "gmt log time"], LogKind.MIXED
)


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
