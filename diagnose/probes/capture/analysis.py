"""From capture files to teardown counts: read, track, decide which side is the TMG, aggregate.

Finished connections are folded into counters keyed by (teardown, originator address, responder
address and port, who sent the first FIN and RST), so memory stays bounded by the number of distinct
host pairs and the live connections, not by the number of connections or packets. Up to `samples`
connections per label are kept as examples (all of them with `keep_all`).
"""

from __future__ import annotations

import ipaddress
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diagnose.probes.capture.formats import ReadResult, read_capture
from diagnose.probes.capture.tcp import (
    C_CSUM,
    C_KEY,
    C_RZW,
    C_SRC,
    TEARDOWNS,
    Connection,
    Tracker,
    _ip_text,
    build_connection,
    teardown_of,
)

WEB_PORTS = frozenset({443, 80})
MAX_BUCKETS = 64  # sample buckets (host pairs) kept per label


@dataclass(frozen=True, slots=True)
class AggKey:
    teardown: str
    orig_ip: str
    resp_ip: str
    resp_port: int
    first_fin_by: str
    first_reset_by: str
    rst_zero_window: bool


@dataclass
class CaptureAnalysis:
    reads: list[ReadResult] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # AggKey -> connections
    bad_checksums: Counter = field(default_factory=Counter)  # AggKey -> bad-checksum frames
    samples: dict[str, dict[tuple[str, str], list[Connection]]] = field(default_factory=dict)
    all_connections: list[Connection] | None = None
    tmg: frozenset[str] = frozenset()
    tmg_inferred: bool = False
    tcp_packets: int = 0
    total_bad_checksums: int = 0
    sample_limit: int = 5
    sources: list[str] = field(default_factory=list)
    raw_counts: Counter = field(default_factory=Counter)
    raw_bad: Counter = field(default_factory=Counter)
    raw_samples: dict = field(default_factory=dict)
    # Status 64 matching (see match.py): the matcher is input, not a result; candidates concatenate
    # across workers, spans merge by min/max per source
    matcher: Any = None
    s64_candidates: list[tuple] = field(default_factory=list)
    s64_spans: dict[int, list[float]] = field(default_factory=dict)

    # -- collecting -------------------------------------------------------------------------------
    def add(self, c: list) -> None:
        """One finished connection (the tracker's state list)."""
        label, fin_by, rst_by, _gap = teardown_of(c)
        key = c[C_KEY]
        if isinstance(key, str):
            src, dst, _sport, dport, _conv = key.split("|")
            orig, resp, port = src, dst, int(dport)
        else:
            n = (len(key) - 4) >> 1
            orig, resp, port = key[:n], key[n:2 * n], (key[2 * n + 2] << 8) | key[2 * n + 3]
        raw = (label, orig, resp, port, fin_by, rst_by, bool(c[C_RZW]))
        self.raw_counts[raw] += 1
        if self.matcher is not None:
            self.matcher.see(c, self)
        if c[C_CSUM]:
            self.raw_bad[raw] += c[C_CSUM]
        if self.all_connections is not None:
            self.all_connections.append(build_connection(c, self.sources[c[C_SRC]]))
        if not self.sample_limit:
            return
        buckets = self.raw_samples.setdefault(label, {})
        pair = (orig, resp)
        bucket = buckets.get(pair)
        if bucket is None:
            if len(buckets) >= MAX_BUCKETS:
                return
            bucket = buckets[pair] = []
        if len(bucket) < self.sample_limit:
            bucket.append(build_connection(c, self.sources[c[C_SRC]]))

    def settle(self) -> None:
        """Turn the raw (bytes-keyed) tallies into address-keyed ones."""
        texts: dict[bytes | str, str] = {}

        def text(ip: bytes | str) -> str:
            if isinstance(ip, str):
                return ip
            t = texts.get(ip)
            if t is None:
                t = texts[ip] = _ip_text(ip)
            return t

        for raw, n in self.raw_counts.items():
            label, orig, resp, port, fin_by, rst_by, zw = raw
            key = AggKey(label, text(orig), text(resp), port, fin_by, rst_by, zw)
            self.counts[key] += n
            if raw in self.raw_bad:
                self.bad_checksums[key] += self.raw_bad[raw]
        for label, buckets in self.raw_samples.items():
            self.samples[label] = {(text(a), text(b)): conns for (a, b), conns in buckets.items()}

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
    def scopes(self) -> dict[str, tuple[str, str | None, str | None, Counter]]:
        """subject -> (scope, leg, server, counts by AggKey) for all, each leg and each server."""
        out: dict[str, tuple[str, str | None, str | None, Counter]] = {"all": ("all", None, None, self.counts)}
        legs: dict[str, Counter] = defaultdict(Counter)
        servers: dict[str, Counter] = defaultdict(Counter)
        for key, n in self.counts.items():
            leg = self.leg(key.orig_ip, key.resp_ip)
            legs[leg][key] += n
            if leg != "client":
                servers[_endpoint(key.resp_ip, key.resp_port)][key] += n
        for leg, counts in sorted(legs.items()):
            out[f"leg:{leg}"] = ("leg", leg, None, counts)
        top = sorted(servers.items(), key=lambda kv: -sum(kv[1].values()))[:50]
        for server, counts in top:
            out[f"server:{server}"] = ("server", None, server, counts)
        return out

    def tally(self, counts: Counter) -> dict[str, int]:
        out = {name.replace("-", "_"): 0 for name in TEARDOWNS}
        out.update(connections=0, dirty_close_by_tmg=0, reset_by_server=0, zero_window_resets=0, bad_checksums=0)
        for key, n in counts.items():
            out[key.teardown.replace("-", "_")] += n
            out["connections"] += n
            leg = self.leg(key.orig_ip, key.resp_ip)
            if (key.teardown == "dirty-close" and leg == "server" and key.first_reset_by == "originator"
                    and key.first_fin_by == "responder"):
                out["dirty_close_by_tmg"] += n
            if self.role(key.first_reset_by, leg) == "server":
                out["reset_by_server"] += n
            if key.first_reset_by != "none" and key.rst_zero_window:
                out["zero_window_resets"] += n
            out["bad_checksums"] += self.bad_checksums.get(key, 0)
        return out

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


_INTERNAL_NETS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "fc00::/7", "::1/128"))


def _private(ip: str) -> bool:
    """RFC 1918 / unique-local / loopback: where a published Exchange server lives."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in _INTERNAL_NETS if net.version == addr.version)


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def analyse(paths: Iterable[Path], tmg_addresses: Iterable[str] = (), samples: int = 5, keep_all: bool = False,
            progress: Callable[[str], None] | None = None, matcher: Any = None) -> CaptureAnalysis:
    """Read every capture (InputError for a file that is not a capture) and aggregate its connections;
    `matcher` (a `match.Status64Matcher`) sees every finished connection."""
    result = CaptureAnalysis(sample_limit=max(0, samples), matcher=matcher)
    if keep_all:
        result.all_connections = []
    tracker = Tracker(result.add)
    result.sources = tracker.sources
    for path in paths:
        if progress:
            progress(f"reading {path.name}")
        result.reads.append(read_capture(Path(path), tracker))
        # connections do not span files: finish this file's before the next one
        tracker.finish_all()
    result.tcp_packets = tracker.tcp_packets
    result.total_bad_checksums = tracker.bad_checksums
    result.settle()
    result.decide_tmg(tmg_addresses)
    return result
