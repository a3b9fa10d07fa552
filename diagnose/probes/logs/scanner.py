"""The scanner: records of one layout at a time counted into a `LogSummary`.

Each distinct key combination (destination, networks, action, status, rule...) is classified once
(`KeyInfo`: the leg, the result code, the figures it counts towards); the counts become figures when
the layout changes and at the end. Only the records that need more (Status 64, client-visible
failures, the first few of each notable code, flood denials) are looked at one by one: their times
for the coincidence checks, their clients, the TMG computer and user names, the cited samples.
"""

from __future__ import annotations

import re
import typing
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, compress, repeat
from operator import add, floordiv, itemgetter, mul, not_, or_
from typing import Any, NamedTuple

from diagnose.compat import zip_strict
from diagnose.probes.logs.codes import STATUS64, ResultCode, result_code
from diagnose.probes.logs.fields import _text
from diagnose.probes.logs.layout import NOT_CONNECTIONS, Layout, LogKind, normalise_action
from diagnose.probes.logs.legs import Site, decide_leg, split_address
from diagnose.probes.logs.summary import (
    MAX_CODE_SAMPLES,
    MAX_NAMES,
    MAX_SAMPLES,
    OA_LONG_MS,
    SAMPLED_GROUPS,
    LogSummary,
)
from diagnose.probes.logs.times import _day_epoch, clock_seconds

# (lines, new keys, (lo date, lo time), (hi date, hi time), OA records, long OA, rows, starts, columns)
_Stamp = typing.Union[typing.Tuple[bytes, bytes], typing.Tuple[None, None]]  # (date, time): none without times
_BlockScan = typing.Tuple[
    int, int, _Stamp, _Stamp, int, int,
    typing.List[int], typing.List[int], typing.List[typing.List[bytes]],
]  # fmt: skip
# the columns `_detail_rows` reads besides the keys
_PICKED = ("date", "time", "source", "orig_client", "computer", "username")

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
# Codes that only say a connection was torn down; a failed request with one of them is not by itself
# an error the client saw.
_NOISE_GROUPS = frozenset({"status64", "teardown", "graceful", "auth_challenge"})
_NO_CLIENT = frozenset({"", "-", "0.0.0.0", "::", "0"})
_NO_NAME = frozenset({"", "-", "anonymous"})


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

    def consume_block(self, block: bytes, first_line: int, fastscan: Any) -> int:
        """Count a block of whole lines with the C accelerator `fastscan` (the `_fastscan` module,
        as `scan` has it); returns the number of lines, or -1 (nothing counted) when the block needs
        the careful path. Gives the same figures as splitting the block and calling `consume`."""
        layout = self.layout
        if fastscan is None or layout is None or layout.width > fastscan.MAX_WIDTH:
            return -1
        date, time, method, uri, taken = self._columns
        pick_names, pick, status = self._pick_names, self._pick, self._status_column

        def scan(counts: Counter[tuple[bytes | None, ...]] | None) -> _BlockScan | None:
            detail = tuple(self._detail_status) if self._detail_status else None
            every = self._detail_all
            if detail is not None and len(detail) > fastscan.MAX_DETAIL:
                detail, every = None, True  # too many values to match: all records, each looked at
            return fastscan.scan_block(
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
            pick = itemgetter(*rows)

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
            rows, infos, whens, sources, originals, computers, users
        ):
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
                client: str | None = ""
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
            if numbers and (
                min(numbers) < 0 or max(numbers[0::3]) > 23 or max(numbers[1::3]) > 59 or max(numbers[2::3]) > 60
            ):
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
