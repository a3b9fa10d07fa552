"""From capture files to teardown counts: read, track, decide which side is the TMG, aggregate.

Finished connections are folded into counters keyed by (teardown, originator address, responder
address and port, who sent the first FIN and RST), so memory stays bounded by the number of distinct
host pairs and the live connections, not by the number of connections or packets. Up to `samples`
connections per label and host pair are kept as examples (all of them with `keep_all`), for at most
`MAX_BUCKETS` host pairs per label: the pairs that sort first by address bytes.

Large captures are read by several processes at once (`jobs`): every worker reads every frame, but
tracks only the connections it owns (`tcp.owner_of`: by ports, the same for both directions), so
each connection is decided by one worker from all of its packets. The workers' `CaptureAnalysis`
objects are then merged field by field (`CaptureAnalysis.merged`): counters add, per-file reads are
taken from worker 0 (every worker reads the same frames), and the samples and the list of all
connections are merged by the connections' finishing-order key (`tcp.C_ORDER`). The sample policy
only depends on that key and on the host pair itself, so the result is the one a single process
gives, fact for fact.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import heapq
import ipaddress
import os
import tempfile
import traceback
import typing
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from diagnose.compat import SLOTS, zip_strict
from diagnose.errors import DiagnoseError
from diagnose.probes.capture.formats import Inflated, ReadResult, inflate, read_capture
from diagnose.probes.capture.tcp import (
    C_CSUM,
    C_KEY,
    C_LOG,
    C_ORDER,
    C_RST0,
    C_RST1,
    C_RZW,
    C_SRC,
    C_T0,
    C_TL,
    TEARDOWNS,
    Connection,
    Tracker,
    _ip_text,
    build_connection,
    ending_of,
)
from diagnose.probes.workers import context_for, start_method

WEB_PORTS = frozenset({443, 80})
_TEARDOWN_FIELDS = {name: name.replace("-", "_") for name in TEARDOWNS}  # label -> fact attribute
MAX_BUCKETS = 64  # sample buckets (host pairs) kept per label
SPLIT_MIN_BYTES = 32 << 20  # below this total size a capture is read by one process
MAX_AUTO_JOBS = 8

# How `CaptureAnalysis.merged` combines a field of the workers' results (dataclass field metadata
# "merge"; a field without it is added when it is a Counter or a number, concatenated when a list):
FIRST = {"merge": "first"}  # the same in every worker (per-file reads, settings): worker 0's
LATER = {"merge": "none"}  # derived after the merge (settle, decide_tmg): left empty


@dataclass(frozen=True, **SLOTS)
class AggKey:
    teardown: str
    orig_ip: str
    resp_ip: str
    resp_port: int
    first_fin_by: str
    first_reset_by: str
    rst_zero_window: bool


# what a summary needs of a connection: (teardown, leg, first_fin_by, first_reset_by, rst_zero_window)
Signature = typing.Tuple[str, str, str, str, bool]

# the loss figures tallied per AggKey (`CaptureAnalysis.loss`: (key, index) -> sum), in this order
LOSS = (
    "unanalysed",
    "connections_with_retransmissions",
    "retransmitted_packets",
    "connections_with_gaps",
    "gaps",
    "missed_bytes",
    "connections_with_loss_before_end",
)


@dataclass
class CaptureAnalysis:
    reads: list[ReadResult] = field(default_factory=list, metadata=FIRST)
    counts: Counter = field(default_factory=Counter, metadata=LATER)  # AggKey -> connections
    bad_checksums: Counter = field(default_factory=Counter, metadata=LATER)  # AggKey -> bad-checksum frames
    samples: dict[str, dict[tuple[str, str], list[Connection]]] = field(default_factory=dict, metadata=LATER)
    all_connections: list[Connection] | None = field(default=None, metadata=LATER)
    tmg: frozenset[str] = field(default=frozenset(), metadata=LATER)
    tmg_inferred: bool = field(default=False, metadata=LATER)
    tcp_packets: int = field(default=0, metadata=FIRST)  # every worker counts every TCP frame
    total_bad_checksums: int = 0  # counted by the worker that owns the connection
    sample_limit: int = field(default=5, metadata=FIRST)
    sources: list[str] = field(default_factory=list, metadata=FIRST)
    raw_counts: Counter = field(default_factory=Counter)
    raw_bad: Counter = field(default_factory=Counter)
    raw_loss: Counter = field(default_factory=Counter)  # (raw key, LOSS index) -> sum; only what is not 0
    loss: Counter = field(default_factory=Counter, metadata=LATER)  # (AggKey, LOSS index) -> sum
    # label -> host pair (raw) -> [(finishing order, Connection)], at most MAX_BUCKETS pairs per label
    raw_samples: dict = field(default_factory=dict, metadata={"merge": "samples"})
    # [(finishing order, Connection)] with keep_all
    raw_connections: list | None = field(default=None, metadata={"merge": "ordered"})
    # [(finishing order, Connection)]: the first `sample_limit` connections with a retransmission or gap
    raw_loss_samples: list = field(default_factory=list, metadata={"merge": "ordered_first"})
    loss_samples: list[Connection] = field(default_factory=list, metadata=LATER)
    # label -> (rank, pair) of the last-sorting pair kept while a label has MAX_BUCKETS pairs
    bucket_cut: dict = field(default_factory=dict, metadata=LATER)
    # Status 64 matching (see match.py): the matcher is input, not a result (worker 0's is kept; the
    # others send none back); candidates concatenate across workers, spans merge by min/max per
    # source, and the sources matched by ports alone by union
    matcher: Any = field(default=None, metadata=FIRST)
    s64_candidates: list[tuple] = field(default_factory=list)
    # source index -> [first, last] connection times (the capture window; Status 64 matching)
    s64_spans: dict[int, list[float]] = field(default_factory=dict, metadata={"merge": "spans"})
    s64_port_only: set[int] = field(default_factory=set)

    # -- collecting -------------------------------------------------------------------------------
    def add(self, c: list) -> None:
        """One finished connection (the tracker's state list)."""
        label, fin_by, rst_by = ending_of(c)
        key = c[C_KEY]
        if type(key) is bytes:
            if len(key) == 12:  # IPv4
                orig, resp, port = key[:4], key[4:8], (key[10] << 8) | key[11]
            else:
                n = (len(key) - 4) >> 1
                orig, resp, port = key[:n], key[n : 2 * n], (key[2 * n + 2] << 8) | key[2 * n + 3]
        else:
            src, dst, _sport, dport, _conv = key.split("|")
            orig, resp, port = src, dst, int(dport)
        raw = (label, orig, resp, port, fin_by, rst_by, bool(c[C_RZW]))
        self.raw_counts[raw] += 1
        span = self.s64_spans.get(c[C_SRC])
        if span is None:
            self.s64_spans[c[C_SRC]] = [c[C_T0], c[C_TL]]
        else:
            if c[C_T0] < span[0]:
                span[0] = c[C_T0]
            if c[C_TL] > span[1]:
                span[1] = c[C_TL]
        if self.matcher is not None:
            self.matcher.see(c, self)
        if c[C_CSUM]:
            self.raw_bad[raw] += c[C_CSUM]
        log = c[C_LOG]
        if type(key) is not bytes:
            self.raw_loss[raw, 0] += 1  # a NetMon text export: not analysed
        elif log is not None and "l" in log:  # a retransmission or gap (keep-alives aside)
            self._loss(raw, log, c)
            if len(self.raw_loss_samples) < self.sample_limit:
                self.raw_loss_samples.append((c[C_ORDER], build_connection(c, self.sources[c[C_SRC]])))
        if self.raw_connections is not None:
            self.raw_connections.append((c[C_ORDER], build_connection(c, self.sources[c[C_SRC]])))
        if not self.sample_limit:
            return
        buckets = self.raw_samples.get(label)
        if buckets is None:
            buckets = self.raw_samples[label] = {}
        pair = (orig, resp)
        bucket: list[tuple[int, list]] | None = buckets.get(pair)
        if bucket is None:
            if len(buckets) >= MAX_BUCKETS:
                # keep the MAX_BUCKETS pairs that sort first: a pair dropped here has that many
                # smaller pairs in this worker alone, so it is not among the kept ones of any run
                cut = self.bucket_cut.get(label)
                if cut is None:
                    last = _last_pair(buckets)
                    cut = self.bucket_cut[label] = (_pair_rank(last), last)
                if (pair if type(orig) is bytes else _pair_rank(pair)) >= cut[0]:
                    return
                del buckets[cut[1]]
                del self.bucket_cut[label]
            bucket = buckets[pair] = []
        if len(bucket) < self.sample_limit:
            bucket.append((c[C_ORDER], c))  # a Connection is made of it if it is kept (`built`)

    def _loss(self, raw: tuple, log: dict, c: list) -> None:
        """The loss figures of a connection with a retransmission or gap (see tcp.loss_of), added to
        the tallies."""
        loss = self.raw_loss
        g = log.get
        retransmitted = g("t0", 0) + g("t1", 0) - g("k0", 0) - g("k1", 0)
        gaps = g("g0", 0) + g("g1", 0)
        if retransmitted:
            loss[raw, 1] += 1
            loss[raw, 2] += retransmitted
        if gaps:
            loss[raw, 3] += 1
            loss[raw, 4] += gaps
            loss[raw, 5] += g("m0", 0) + g("m1", 0)
        first = log["l"]
        rst = min(f for f in (c[C_RST0], c[C_RST1]) if f) if c[C_RST0] or c[C_RST1] else 0
        if not rst or first < rst:
            loss[raw, 6] += 1

    def built(self) -> None:
        """The samples still held as tracker state lists become `Connection`s (at the end of a
        worker's share: samples that a smaller host pair pushed out are never built)."""
        sources = self.sources
        for buckets in self.raw_samples.values():
            for bucket in buckets.values():
                for i, (order, conn) in enumerate(bucket):
                    if type(conn) is list:
                        bucket[i] = (order, build_connection(conn, sources[conn[C_SRC]]))

    def textual(self) -> None:
        """Key the raw tallies by address text instead of address bytes (each worker does it for its
        share, in parallel, before the parent merges them)."""
        if all(type(raw[1]) is str and type(raw[2]) is str for raw in self.raw_counts):
            return
        text = _Texts()
        counts: Counter = Counter()
        bad: Counter = Counter()
        raw_bad = self.raw_bad
        textual: dict[tuple, tuple] = {}
        for raw, n in self.raw_counts.items():
            label, orig, resp, port, fin_by, rst_by, zw = raw
            t = textual[raw] = (label, text(orig), text(resp), port, fin_by, rst_by, zw)
            counts[t] += n
            if raw_bad and raw in raw_bad:
                bad[t] += raw_bad[raw]
        loss: Counter = Counter()
        for (raw, i), n in self.raw_loss.items():
            loss[textual[raw], i] += n
        self.raw_counts, self.raw_bad, self.raw_loss = counts, bad, loss

    def settle(self) -> None:
        """Turn the raw (bytes-keyed) tallies into address-keyed ones."""
        self.built()
        self.textual()
        # one AggKey per distinct key
        keys = {t: AggKey(*t) for t in self.raw_counts}
        self.counts.update({keys[t]: n for t, n in self.raw_counts.items()})
        self.bad_checksums.update({keys[t]: n for t, n in self.raw_bad.items()})
        self.loss.update({(keys[t], i): n for (t, i), n in self.raw_loss.items()})
        text = _Texts()
        for label, buckets in self.raw_samples.items():
            # pairs in the order their first sample finished, samples in finishing order
            ordered = sorted(buckets.items(), key=lambda kv: kv[1][0][0])
            self.samples[label] = {(text(a), text(b)): [conn for _order, conn in conns] for (a, b), conns in ordered}
        if self.raw_connections is not None:
            self.all_connections = [conn for _order, conn in self.raw_connections]
        self.loss_samples = [conn for _order, conn in self.raw_loss_samples]

    # -- merging the workers of a split run ---------------------------------------------------------
    @classmethod
    def merged(cls, parts: list[CaptureAnalysis]) -> CaptureAnalysis:
        """One analysis from the (unsettled) analyses of the workers of a split run, as if one
        process had read the capture: every field is combined by its "merge" metadata."""
        out = cls()
        first = parts[0]
        for f in fields(cls):
            how = f.metadata.get("merge")
            values = [getattr(p, f.name) for p in parts]
            if how == "none":
                continue
            if how == "first":
                value = values[0]
            elif how == "samples":
                value = _merge_samples(values, first.sample_limit)
            elif how == "ordered":
                value = None if values[0] is None else list(heapq.merge(*values, key=lambda t: t[0]))
            elif how == "ordered_first":  # each worker's first ones, in order: the first ones of all
                value = list(heapq.merge(*values, key=lambda t: t[0]))[: first.sample_limit]
            elif how == "spans":
                value = {}
                for v in values:
                    for source, (t0, tl) in v.items():
                        have = value.get(source)
                        value[source] = [t0, tl] if have is None else [min(have[0], t0), max(have[1], tl)]
            elif isinstance(values[0], set):
                value = set().union(*values)
            elif isinstance(values[0], Counter):
                value = Counter()
                for v in values:
                    value.update(v)
            elif isinstance(values[0], (int, float)) and not isinstance(values[0], bool):
                value = sum(values)
            elif isinstance(values[0], list):
                value = [x for v in values for x in v]
            elif isinstance(values[0], dict):
                value = {}
                for v in values:
                    value.update(v)
            else:
                value = values[0]
            setattr(out, f.name, value)
        return out

    # -- roles ------------------------------------------------------------------------------------
    def decide_tmg(self, given: Iterable[str]) -> None:
        """The TMG addresses: as given; else an address that both serves and opens 443/80
        connections; else the addresses opening 443/80 connections to private (internal) servers;
        else every address opening 443/80 connections."""
        given = frozenset(given)
        seen = {k.orig_ip for k in self.counts} | {k.resp_ip for k in self.counts}
        if given & seen:
            self.tmg, self.tmg_inferred = given, False
            return
        # none of the given addresses is in the capture (e.g. a NetMon text export without address
        # columns, or a trace taken elsewhere): infer, as when none is given
        originators = {k.orig_ip for k in self.counts if k.resp_port in WEB_PORTS}
        web_servers = {k.resp_ip for k in self.counts if k.resp_port in WEB_PORTS}
        proxy = originators & web_servers  # one address both serves 443/80 and connects to 443/80
        private = {ip: _private(ip) for ip in web_servers}  # one parse per address, not per tally row
        inward = {k.orig_ip for k in self.counts if k.resp_port in WEB_PORTS and private[k.resp_ip]}
        self.tmg = frozenset(proxy or inward or originators)
        self.tmg_inferred = True

    def leg(self, orig_ip: str, resp_ip: str) -> str:
        if orig_ip in self.tmg:
            return "server"
        if resp_ip in self.tmg:
            return "client"
        return "unknown"

    def role(self, side: str, leg: str) -> str:
        """Role of `originator`/`responder` on a leg: tmg, server or client."""
        if side == "none":
            return "none"
        if leg == "server":
            return "tmg" if side == "originator" else "server"
        if leg == "client":
            return "client" if side == "originator" else "tmg"
        return "client" if side == "originator" else "server"

    # -- views --------------------------------------------------------------------------------------
    def scopes(self) -> dict[str, tuple[str, str | None, str | None, dict[Signature, list[int]]]]:
        """subject -> (scope, leg, server, tallies) for all, each leg and each server; the tallies
        of a scope by `Signature` (all a summary needs of a connection) -> [connections, bad-checksum
        frames, the LOSS figures...], made in one pass over the counts."""
        bad = self.bad_checksums
        lost: dict[AggKey, list[int]] = {}
        for (key, i), n in self.loss.items():
            lost.setdefault(key, [0] * len(LOSS))[i] += n
        none = [0] * len(LOSS)
        every: dict[Signature, list[int]] = {}
        legs: dict[str, dict[Signature, list[int]]] = defaultdict(dict)
        servers: dict[str, dict[Signature, list[int]]] = defaultdict(dict)
        totals: Counter = Counter()  # server -> connections
        leg_of: dict[tuple[str, str], str] = {}
        server_of: dict[tuple[str, int], str] = {}
        for key, n in self.counts.items():
            pair = (key.orig_ip, key.resp_ip)
            leg = leg_of.get(pair)
            if leg is None:
                leg = leg_of[pair] = self.leg(*pair)
            sig = (key.teardown, leg, key.first_fin_by, key.first_reset_by, key.rst_zero_window)
            b = bad.get(key, 0) if bad else 0
            figures = lost.get(key, none) if lost else none
            targets: tuple[dict[Signature, list[int]], ...] = (every, legs[leg])
            if leg != "client":
                end = (key.resp_ip, key.resp_port)
                server = server_of.get(end)
                if server is None:
                    server = server_of[end] = _endpoint(*end)
                totals[server] += n
                targets += (servers[server],)
            for target in targets:
                slot = target.get(sig)
                if slot is None:
                    target[sig] = [n, b, *figures]
                else:
                    slot[0] += n
                    slot[1] += b
                    if figures is not none:
                        for i, v in enumerate(figures, 2):
                            slot[i] += v
        out: dict[str, tuple[str, str | None, str | None, dict[Signature, list[int]]]] = {
            "all": ("all", None, None, every)
        }
        for leg, sigs in sorted(legs.items()):
            out[f"leg:{leg}"] = ("leg", leg, None, sigs)
        for server in sorted(servers, key=lambda name: (-totals[name], name))[:50]:
            out[f"server:{server}"] = ("server", None, server, servers[server])
        return out

    def tally(self, counts: Counter | dict[Signature, list[int]]) -> dict[str, Any]:
        """The summary counts of a scope: from its tallies by `Signature` (`scopes`), or from
        counts by `AggKey`."""
        if counts and isinstance(next(iter(counts)), AggKey):
            bad = self.bad_checksums
            sigs: dict[Signature, list[int]] = {}
            for key, n in typing.cast("Counter[AggKey]", counts).items():
                sig = (
                    key.teardown,
                    self.leg(key.orig_ip, key.resp_ip),
                    key.first_fin_by,
                    key.first_reset_by,
                    key.rst_zero_window,
                )
                slot = sigs.setdefault(sig, [0] * (2 + len(LOSS)))
                slot[0] += n
                slot[1] += bad.get(key, 0)
                for i in range(len(LOSS)):
                    slot[2 + i] += self.loss.get((key, i), 0)
            counts = sigs
        out: dict[str, Any] = {name: 0 for name in _TEARDOWN_FIELDS.values()}
        connections = by_tmg = by_server = zero_window = bad_frames = 0
        figures = [0] * len(LOSS)
        tallies = typing.cast("dict[Signature, list[int]]", counts)  # by Signature now, either way
        for (teardown, leg, fin_by, rst_by, zero_win), (n, b, *lost) in tallies.items():
            out[_TEARDOWN_FIELDS[teardown]] += n
            connections += n
            if teardown == "dirty-close" and leg == "server" and rst_by == "originator" and fin_by == "responder":
                by_tmg += n
            if rst_by == "responder" and leg != "client":  # role(rst_by, leg) == "server"
                by_server += n
            if rst_by != "none" and zero_win:
                zero_window += n
            bad_frames += b
            for i, v in enumerate(lost):
                figures[i] += v
        out.update(
            connections=connections,
            dirty_close_by_tmg=by_tmg,
            reset_by_server=by_server,
            zero_window_resets=zero_window,
            bad_checksums=bad_frames,
        )
        out.update(loss_figures(connections, figures))
        return out

    def loss_by_teardown(self, counts: dict[Signature, list[int]]) -> dict[str, dict[str, Any]]:
        """A scope's loss figures per teardown label (the labels with connections), from `scopes`."""
        per: dict[str, list[int]] = {}
        for (teardown, *_rest), (n, _b, *lost) in counts.items():
            slot = per.setdefault(teardown, [0] * (1 + len(LOSS)))
            slot[0] += n
            for i, v in enumerate(lost, 1):
                slot[i] += v
        return {
            label: {**loss_figures(per[label][0], per[label][1:]), "connections": per[label][0]}
            for label in TEARDOWNS
            if label in per
        }

    def chosen_samples(self) -> dict[str, list[Connection]]:
        """Up to `sample_limit` connections per label, server-leg connections first."""
        order = {"server": 0, "client": 1, "unknown": 2}
        out: dict[str, list[Connection]] = {}
        for label in TEARDOWNS:
            buckets = self.samples.get(label, {})
            ranked = sorted(buckets.items(), key=lambda kv: order[self.leg(*kv[0])])
            picked: list[Connection] = []
            for _pair, conns in ranked:
                picked.extend(conns[: self.sample_limit - len(picked)])
                if len(picked) >= self.sample_limit:
                    break
            if picked:
                out[label] = sorted(picked, key=lambda c: (c.source, c.first_frame))
        return out


_INTERNAL_NETS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "fc00::/7", "::1/128")
)


def loss_figures(connections: int, figures: list[int]) -> dict[str, Any]:
    """The fact attributes of LOSS figures summed over `connections` connections."""
    analysed = connections - figures[0]
    if not analysed:  # (missing, not 0: nothing was analysed)
        return {"loss_analysed": 0}
    out: dict[str, Any] = dict(zip_strict(LOSS[1:], figures[1:]))
    out["loss_analysed"] = analysed
    out["share_with_retransmissions"] = round(figures[1] / analysed, 4)
    out["share_with_gaps"] = round(figures[3] / analysed, 4)
    out["share_with_loss_before_end"] = round(figures[6] / analysed, 4)
    return out


class _Texts(dict):
    """Address bytes -> text, each converted once; text stays as it is."""

    def __call__(self, ip: bytes | str) -> str:
        if type(ip) is str:
            return ip
        t = self.get(ip)
        if t is None:
            t = self[ip] = _ip_text(typing.cast(bytes, ip))  # not a str (above)
        return t


def _private(ip: str) -> bool:
    """RFC 1918 / unique-local / loopback: where a published Exchange server lives."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in _INTERNAL_NETS if net.version == addr.version)


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _pair_rank(pair: tuple[bytes | str, bytes | str]) -> tuple[bytes, bytes]:
    """A total order of host pairs that does not depend on when they were seen."""
    a, b = pair
    return (a.encode() if isinstance(a, str) else a, b.encode() if isinstance(b, str) else b)


def _last_pair(buckets: dict) -> tuple:
    """The host pair that sorts last (`_pair_rank`)."""
    try:
        return max(buckets)  # address bytes (or text) alone: the same order, compared in C
    except TypeError:  # bytes and text pairs (a pcap and a NetMon text export) together
        return max(buckets, key=_pair_rank)


def _merge_samples(values: list[dict], limit: int) -> dict:
    out: dict = {}
    for label in {label for v in values for label in v}:
        pairs: dict = {}
        for v in values:
            for pair, conns in v.get(label, {}).items():
                pairs.setdefault(pair, []).append(conns)
        kept = sorted(pairs, key=_pair_rank)[:MAX_BUCKETS]
        out[label] = {pair: list(heapq.merge(*pairs[pair], key=lambda t: t[0]))[:limit] for pair in kept}
    return out


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def plan_jobs(paths: list[Path], jobs: int | None) -> int:
    """Worker processes for these files: `jobs` when given, else every CPU (at most MAX_AUTO_JOBS)
    when the files total at least SPLIT_MIN_BYTES, else 1."""
    if jobs is not None:
        return max(1, jobs)
    size = 0
    for path in paths:
        with contextlib.suppress(OSError):
            size += path.stat().st_size
    return min(cpu_count(), MAX_AUTO_JOBS) if size >= SPLIT_MIN_BYTES else 1


def analyse(
    paths: Iterable[Path],
    tmg_addresses: Iterable[str] = (),
    samples: int = 5,
    keep_all: bool = False,
    progress: Callable[[str], None] | None = None,
    jobs: int | None = None,
    method: str | None = None,
    matcher: Any = None,
    deadline: float | None = None,
) -> CaptureAnalysis:
    """Read every capture (InputError for a file that is not a capture) and aggregate its connections.

    `jobs`: worker processes (default: see `plan_jobs`); `method`: how workers start, "fork" (the
    default where the platform has it and this process runs no other thread) or "spawn";
    `matcher` (a `match.Status64Matcher`) sees every finished connection, in whichever worker owns it.
    Past `deadline` (a `time.monotonic()` value) reading stops with `DeadlineExceeded`: worker 0, in
    this process, sees it and the other workers are stopped.
    """
    paths = [Path(p) for p in paths]
    n = plan_jobs(paths, jobs)
    with _no_cycle_collection():
        if n <= 1:
            result = analyse_share(paths, samples, keep_all, 1, 0, progress, matcher, deadline=deadline)
        else:
            result = _split(paths, samples, keep_all, n, progress, method, matcher, deadline)
        result.settle()
    result.decide_tmg(tmg_addresses)
    return result


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """The cyclic garbage collector paused: reading makes no reference cycles, but its many
    long-lived objects (connection states, tallies) would make the collector walk them again and
    again. Reference counting still frees everything; the collector resumes afterwards."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def analyse_share(
    paths: list[Path],
    samples: int,
    keep_all: bool,
    jobs: int,
    index: int,
    progress: Callable[[str], None] | None = None,
    matcher: Any = None,
    inflated: Mapping[str, Inflated] | None = None,
    deadline: float | None = None,
) -> CaptureAnalysis:
    """The connections owned by worker `index` of `jobs` (all of them for 1 of 1), not yet settled;
    `inflated`: gzip'd captures already decompressed, by path."""
    result = CaptureAnalysis(sample_limit=max(0, samples), matcher=matcher)
    if keep_all:
        result.raw_connections = []
    tracker = Tracker(result.add, jobs, index)
    tracker.deadline = deadline
    result.sources = tracker.sources
    for path in paths:
        if progress:
            progress(f"reading {path.name}")
        result.reads.append(read_capture(Path(path), tracker, (inflated or {}).get(str(path))))
        # connections do not span files: finish this file's before the next one
        tracker.finish_all()
    result.built()
    result.textual()
    result.tcp_packets = tracker.tcp_packets
    result.total_bad_checksums = tracker.bad_checksums
    return result


# -- worker processes -------------------------------------------------------------------------------
def _share_payload(
    paths: list[Path],
    samples: int,
    keep_all: bool,
    jobs: int,
    index: int,
    matcher: Any = None,
    inflated: Mapping[str, Inflated] | None = None,
) -> bytes:
    """A worker's result, or its failure, pickled for the parent (without the matcher, which the
    parent has)."""
    import pickle

    payload: tuple[str, Any]
    try:
        with _no_cycle_collection():  # (a spawned worker; a forked one has it paused already)
            share = analyse_share(paths, samples, keep_all, jobs, index, matcher=matcher, inflated=inflated)
        share.matcher = None
        payload = ("ok", share)
    except DiagnoseError as exc:
        payload = ("diagnose", (type(exc), exc.message, exc.where))
    except BaseException:  # any failure (even Ctrl-C) is reported to the parent, which raises it
        payload = ("error", traceback.format_exc())
    return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)


def _unpack(data: bytes, index: int) -> CaptureAnalysis:
    if not data:
        raise RuntimeError(f"capture worker {index} ended without a result")
    import pickle

    status, value = pickle.loads(data)
    if status == "ok":
        return value
    if status == "diagnose":
        kind, message, at = value
        raise kind(message, at)
    raise RuntimeError(f"capture worker {index} failed:\n{value}")


def _spawned(
    conn,
    paths: list[Path],
    samples: int,
    keep_all: bool,
    jobs: int,
    index: int,
    matcher: Any = None,
    inflated: Mapping[str, Inflated] | None = None,
) -> None:
    """Entry point of a spawned worker."""
    conn.send_bytes(_share_payload(paths, samples, keep_all, jobs, index, matcher, inflated))
    conn.close()


class _Forked:
    """Worker `index` in a forked child; its pickled result comes back through a pipe."""

    def __init__(
        self,
        paths: list[Path],
        samples: int,
        keep_all: bool,
        jobs: int,
        index: int,
        matcher: Any = None,
        inflated: Mapping[str, Inflated] | None = None,
    ) -> None:
        self.index = index
        read_fd, write_fd = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: compute, write, leave without running the parent's cleanup
            status = 1
            try:
                os.close(read_fd)
                data = _share_payload(paths, samples, keep_all, jobs, index, matcher, inflated)
                with os.fdopen(write_fd, "wb") as fh:
                    fh.write(data)
                status = 0
            finally:
                os._exit(status)
        os.close(write_fd)
        self.fd = read_fd

    def result(self) -> CaptureAnalysis:
        with os.fdopen(self.fd, "rb") as fh:
            data = fh.read()
        os.waitpid(self.pid, 0)
        self.pid = 0
        return _unpack(data, self.index)

    def stop(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, 15)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = 0


class _Spawned:
    """Worker `index` in a new interpreter (`method` "spawn") or a child of the forkserver (no fork
    here, or other threads in this process)."""

    def __init__(
        self,
        paths: list[Path],
        samples: int,
        keep_all: bool,
        jobs: int,
        index: int,
        matcher: Any = None,
        inflated: Mapping[str, Inflated] | None = None,
        method: str = "spawn",
    ) -> None:
        ctx = context_for(method)
        self.index = index
        self.conn, child = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(
            target=_spawned, daemon=True, args=(child, paths, samples, keep_all, jobs, index, matcher, inflated)
        )
        self.proc.start()
        child.close()

    def result(self) -> CaptureAnalysis:
        try:
            data = self.conn.recv_bytes()
        except EOFError:
            data = b""
        self.proc.join()
        return _unpack(data, self.index)

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
        self.proc.join()


def _split(
    paths: list[Path],
    samples: int,
    keep_all: bool,
    jobs: int,
    progress: Callable[[str], None] | None,
    method: str | None,
    matcher: Any = None,
    deadline: float | None = None,
) -> CaptureAnalysis:
    """Workers 1 .. jobs-1 in child processes, worker 0 here; their results merged. A gzip'd capture
    is decompressed once, here, into a temporary folder the workers read (removed afterwards).

    Workers are forked only from a single-threaded process (`workers.start_method`): `run` and
    `collect` read captures in a probe thread beside others, and a child forked while another thread
    held the import lock would wait on it forever; there they come from the forkserver (or spawn)."""
    if method not in (None, "fork", "spawn"):
        raise ValueError(f"unknown start method {method!r}")
    chosen = start_method(method)
    if chosen == "fork":
        # whatever the workers import later is imported now, before the fork
        from diagnose.probes.capture import netmon_text  # noqa: F401
    starter = _Forked if chosen == "fork" else functools.partial(_Spawned, method=chosen)
    children: list[_Forked | _Spawned] = []
    with tempfile.TemporaryDirectory(prefix="diagnose-capture-") as folder:
        inflated: dict[str, Inflated] = {}
        for path in paths:
            with contextlib.suppress(OSError, DiagnoseError):  # read_capture reports the file itself
                found = inflate(path, folder)
                if found is not None:
                    inflated[str(path)] = found
        try:
            for index in range(1, jobs):
                children.append(starter(paths, samples, keep_all, jobs, index, matcher, inflated))
            parts = [analyse_share(paths, samples, keep_all, jobs, 0, progress, matcher, inflated, deadline)]
            parts.extend(child.result() for child in children)
        finally:
            for child in children:
                child.stop()
    return CaptureAnalysis.merged(parts)
