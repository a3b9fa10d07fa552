"""Synthetic captures: TCP conversations with a known ending, written in every format we read.

Used by the tests (differential checks, fuzzing, NetMon round trips) and by `bench/capture.py`. The
frames are well formed (valid IPv4/TCP checksums), so tshark decodes them like real ones.

* `SCENARIOS`: one packet script per teardown, with the expected label and who sends FIN/RST first.
* `conversations(...)`: many connections interleaved, as `Segment`s with times.
* `frame(...)`: a segment as a frame of one link layer (Ethernet, 802.1Q, QinQ, PPPoE, SLL, SLL2,
  raw IPv4/IPv6, BSD/OpenBSD loopback).
* `write_pcap`, `write_pcapng`, `write_netmon` (2.0-2.3, metadata frames, NDIS NetEvent wrapping),
  `write_netmon_text`.
* `random_segments(...)`: random flags, windows, lengths, sequence and acknowledgement numbers on a
  few 4-tuples; `damaged(...)`: bytes changed at random (fuzzing).
* `lossy(...)`: connections with retransmissions, packet loss before and after the capture point,
  reordering, keep-alive probes, sequence numbers that wrap and captures begun midstream, each with
  what the capture shows of it (`LossTruth`, worked out on unwrapped byte offsets).
"""

from __future__ import annotations

import calendar
import functools
import ipaddress
import random
import struct
import time
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from diagnose.compat import SLOTS, zip_strict

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


@dataclass(frozen=True, **SLOTS)
class Segment:
    ts: float
    src: str
    dst: str
    sport: int
    dport: int
    flags: int
    seq: int
    ack: int
    win: int
    payload: int  # payload length (bytes of 0x61)
    conn: int  # index of the connection it belongs to


@dataclass(frozen=True, **SLOTS)
class Scenario:
    name: str
    teardown: str
    first_fin_by: str  # originator | responder | none
    first_reset_by: str
    script: tuple[tuple[int, int, int, int], ...]  # (direction 0=client/1=server, flags, payload, window)


def _s(*steps: tuple[int, int, int, int]) -> tuple[tuple[int, int, int, int], ...]:
    return steps


HANDSHAKE = ((0, SYN, 0, 64240), (1, SYN | ACK, 0, 65160), (0, ACK, 0, 502))
REQUEST = ((0, PSH | ACK, 517, 502), (1, ACK, 0, 509), (1, PSH | ACK, 1400, 509), (0, ACK, 0, 501))

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "graceful-client-first",
            "graceful",
            "originator",
            "none",
            _s(*HANDSHAKE, *REQUEST, (0, FIN | ACK, 0, 501), (1, FIN | ACK, 0, 509), (0, ACK, 0, 501)),
        ),
        Scenario(
            "graceful-server-first",
            "graceful",
            "responder",
            "none",
            _s(*HANDSHAKE, *REQUEST, (1, FIN | ACK, 0, 509), (0, FIN | ACK, 0, 501), (1, ACK, 0, 509)),
        ),
        Scenario(
            "dirty-close",
            "dirty-close",
            "responder",
            "originator",
            _s(*HANDSHAKE, *REQUEST, (1, FIN | ACK, 0, 509), (0, ACK, 0, 501), (0, RST | ACK, 0, 0)),
        ),
        Scenario(
            "reset-after-own-fin",
            "reset-after-own-fin",
            "originator",
            "originator",
            _s(*HANDSHAKE, *REQUEST, (0, FIN | ACK, 0, 501), (1, ACK, 0, 509), (0, RST | ACK, 0, 0)),
        ),
        Scenario(
            "server-reset",
            "reset",
            "none",
            "responder",
            _s(*HANDSHAKE, (0, PSH | ACK, 517, 502), (1, ACK, 0, 509), (1, RST | ACK, 0, 0)),
        ),
        Scenario("client-abort", "reset", "none", "originator", _s(*HANDSHAKE, *REQUEST, (0, RST | ACK, 0, 0))),
        Scenario("refused", "refused", "none", "responder", _s((0, SYN, 0, 64240), (1, RST | ACK, 0, 0))),
        Scenario("unanswered", "unanswered", "none", "none", _s((0, SYN, 0, 64240), (0, SYN, 0, 64240))),
        Scenario(
            "half-closed",
            "half-closed",
            "originator",
            "none",
            _s(*HANDSHAKE, *REQUEST, (0, FIN | ACK, 0, 501), (1, ACK, 0, 509)),
        ),
        Scenario("open", "open", "none", "none", _s(*HANDSHAKE, *REQUEST)),
        Scenario(
            "midstream-graceful",
            "graceful",
            "responder",
            "none",
            _s(
                (0, ACK, 0, 501),
                (1, PSH | ACK, 1400, 509),
                (0, ACK, 0, 501),
                (1, FIN | ACK, 0, 509),
                (0, FIN | ACK, 0, 501),
                (1, ACK, 0, 509),
            ),
        ),
    )
}

CLIENT_NET = "10.1.0.0"
SERVERS = ("10.0.0.10", "10.0.0.11", "10.0.0.12", "10.0.0.13")
TMG_INTERNAL = "10.0.0.1"


def script_segments(
    scenario: Scenario,
    client: tuple[str, int],
    server: tuple[str, int],
    start: float,
    conn: int = 0,
    gap: float = 0.001,
    extra_data: int = 0,
) -> list[Segment]:
    """The packets of one connection; `extra_data` request/response pairs are added before the close."""
    steps = list(scenario.script)
    if extra_data and len(steps) > len(HANDSHAKE) and scenario.script[:3] == HANDSHAKE:
        steps[3:3] = list(REQUEST) * extra_data
    seqs = [1_000_000 + conn * 7919 % 1_000_000, 50_000_000 + conn * 104729 % 1_000_000]
    out: list[Segment] = []
    t = start
    for direction, flags, payload, win in steps:
        src, dst = (client, server) if direction == 0 else (server, client)
        ack = seqs[1 - direction] if flags & ACK else 0
        out.append(
            Segment(
                t,
                src[0],
                dst[0],
                src[1],
                dst[1],
                flags,
                seqs[direction] & 0xFFFFFFFF,
                ack & 0xFFFFFFFF,
                win,
                payload,
                conn,
            )
        )
        if not (scenario.name == "unanswered" and flags & SYN):
            seqs[direction] += payload + (1 if flags & (SYN | FIN) else 0)
        t += gap
    return out


def conversations(
    n: int,
    mix: Iterable[str] | None = None,
    seed: int = 7,
    concurrency: int = 200,
    extra_data: int = 0,
    ipv6: bool = False,
    start: float = 1_700_000_000.0,
) -> Iterator[Segment]:
    """`n` connections of the scenarios in `mix` (round robin), `concurrency` of them interleaved."""
    rng = random.Random(seed)
    names = list(mix or SCENARIOS)
    base = int(ipaddress.ip_address(CLIENT_NET))

    def new(i: int) -> list[Segment]:
        sc = SCENARIOS[names[i % len(names)]]
        client_ip = str(ipaddress.ip_address(base + 1 + (i // 20000) % 250 * 256 + i % 250))
        port = 1024 + (i * 7) % 60000
        server = (SERVERS[i % len(SERVERS)], 443 if i % 5 else 80)
        if ipv6:
            client_ip = f"fd00::1:{i // 65536 % 65536:x}:{i % 65536:x}"
            server = (f"fd00::{10 + i % 4:x}", server[1])
        return script_segments(sc, (client_ip, port), server, 0.0, i, extra_data=extra_data)

    return _interleaved((new(i) for i in range(n)), rng, concurrency, start)


# weighted: mostly ACK and PSH-ACK, then every SYN/FIN/RST combination and odd ones (no flag, ECN bits)
RANDOM_FLAGS = (
    (ACK,) * 10
    + (PSH | ACK,) * 5
    + (SYN,) * 3
    + (SYN | ACK,) * 3
    + (FIN | ACK,) * 3
    + (RST | ACK,) * 2
    + (RST,) * 2
    + (FIN, 0, PSH, 0x20 | ACK, SYN | FIN, SYN | RST, FIN | RST | ACK, SYN | ACK | PSH, 0xC0 | ACK)
)


def random_segments(
    n: int,
    seed: int,
    tuples: int = 12,
    ipv6: bool = False,
    gap: float = 0.0,
    backwards: float = 0.0,
    gap_every: int = 0,
) -> list[Segment]:
    """`n` segments in either direction of `tuples` 4-tuples used again and again (port reuse), with
    random flags (`RANDOM_FLAGS`), windows (zero too), payload lengths (odd too) and sequence numbers
    (retransmissions: the same one again). Times advance by up to 20 ms, with probability `gap` by 45 s
    (past the tracker's linger time), with probability `backwards` go back 100 s; with `gap_every`,
    45 s pass ten segments before every multiple of it."""
    rng = random.Random(seed)
    acks = random.Random(seed ^ 0x5EED)  # acknowledgement numbers from a stream of their own
    ends = [
        (f"10.1.0.{1 + i % 5}", 40000 + i, f"10.0.0.{10 + i % 3}", (443, 80, 8080, 50000, 1000)[i % 5])
        for i in range(tuples)
    ]
    if ipv6:
        ends = [(f"fd00::1:{s.rsplit('.', 1)[1]}", sp, f"fd00::{d.rsplit('.', 1)[1]}", dp) for s, sp, d, dp in ends]
    seqs: dict[tuple, int] = {}
    t = 1_700_000_000.0
    out = []
    for k in range(n):
        src, sport, dst, dport = rng.choice(ends)
        if rng.random() < 0.5:
            src, sport, dst, dport = dst, dport, src, sport
        flags = rng.choice(RANDOM_FLAGS)
        payload = rng.choice((0, 0, 0, 1, 7, 517))
        fwd = (src, sport, dst, dport)
        seq = seqs.get(fwd, rng.randrange(1 << 32))
        if rng.random() < 0.7:  # else a retransmission: the same sequence number again
            seq = (seq + payload + (1 if flags & (SYN | FIN) else 0) + rng.choice((0, 0, 1000))) & 0xFFFFFFFF
        seqs[fwd] = seq
        r = rng.random()
        t = round(t + (45.0 if r < gap else -100.0 if r < gap + backwards else rng.choice((0.0001, 0.001, 0.02))), 6)
        if gap_every and k % gap_every == gap_every - 10:
            t += 45.0
        win = rng.choice((0, 0, 512, 65535))
        # mostly what the other direction has sent, sometimes beyond (data the capture did not show)
        peer = seqs.get((dst, dport, src, sport), 0)
        ack = (
            (peer + acks.choice((0, 0, 0, 1, 517, 3000, -5))) & 0xFFFFFFFF
            if acks.random() < 0.9
            else acks.randrange(1 << 32)
        )
        out.append(Segment(t, src, dst, sport, dport, flags, seq, ack, win, payload, k))
    return out


@dataclass
class LossTruth:
    """What a capture shows of one `lossy` connection, in Zeek's terms (see tcp.py)."""

    retransmissions: int = 0  # captured segments with payload ending at or below the highest end seen
    keepalives: int = 0
    gaps: int = 0  # holes in the captured data that the peer acknowledged (established connections only)
    missed_bytes: int = 0
    teardown: str = ""


LOSS_EVENTS = ("retransmit", "upstream", "missed", "reorder")
ENDINGS = ("dirty-close", "graceful", "reset")  # the reset: by the server
MSS = 1448


class _Side:
    """One direction of a lossy connection, in unwrapped byte offsets from its ISN."""

    def __init__(self, isn: int) -> None:
        self.isn = isn
        self.nxt = 0  # next offset the sender sends
        self.hi = None  # highest end the capture has shown (None: nothing shown yet)
        self.received: list[tuple[int, int]] = []  # ranges the receiver has
        self.captured: list[tuple[int, int]] = []  # data ranges the capture has shown
        self.accounted = None  # capture: offset below which every byte was seen or counted missing

    def ack(self) -> int:
        """The receiver's cumulative acknowledgement (offset)."""
        top = 0
        for a, b in sorted(self.received):
            if a > top:
                break
            top = max(top, b)
        return top


def lossy(
    n: int,
    seed: int,
    events: float = 0.25,
    ipv6: bool = False,
    concurrency: int = 20,
    start: float = 1_700_000_000.0,
    client: str | None = None,
    server: str | None = None,
) -> tuple[list[Segment], dict[int, LossTruth]]:
    """`n` connections (request, response in bursts, a pause, the end in turn of `ENDINGS`), each data
    segment with probability `events` subject to one of `LOSS_EVENTS`: sent again later
    (`retransmit`), lost before the capture point and sent again after the rest of its burst
    (`upstream`), received but missed by the capture (`missed`), swapped with the next one
    (`reorder`). One connection in five has sequence numbers that wrap during the transfer, one in
    three a keep-alive probe in its pause, one in seven is captured from after its handshake. The
    clients have addresses of their own, or all `client` (TMG on its server leg), the server is
    `server` (default 10.0.0.20 or fd00::10), port 443. Returns the segments, interleaved, and per
    connection (`Segment.conn`) what the capture shows of it."""
    rng = random.Random(seed)
    conns: list[list[Segment]] = []
    truth: dict[int, LossTruth] = {}
    for i in range(n):
        ends = (
            (client or (f"fd00::1:{i:x}" if ipv6 else f"10.2.{i // 250 % 250}.{1 + i % 250}"), 20000 + i % 40000),
            (server or ("fd00::10" if ipv6 else "10.0.0.20"), 443),
        )
        segs, t = _lossy_connection(i, rng, *ends, events)
        conns.append(segs)
        truth[i] = t
    return list(_interleaved(conns, rng, concurrency, start)), truth


def _lossy_connection(
    i: int, rng: random.Random, client: tuple[str, int], server: tuple[str, int], events: float
) -> tuple[list[Segment], LossTruth]:
    wrap = i % 5 == 1
    sides = [
        _Side(((1 << 32) - rng.randrange(1, 4000)) if wrap else rng.randrange(1 << 32)),
        _Side(((1 << 32) - rng.randrange(1, 4000)) if wrap else rng.randrange(1 << 32)),
    ]
    truth = LossTruth(teardown=ENDINGS[i % len(ENDINGS)])
    midstream = i % 7 == 3
    out: list[Segment] = []
    shown = [0]  # packets emitted; the first three are not captured when midstream

    def emit(d: int, flags: int, off: int, payload: int, win: int = 500, keepalive: bool = False) -> None:
        """Direction `d` sends [off, off + payload) (+ SYN/FIN); the capture shows it (unless midstream
        and still in the handshake): the truth follows what the capture shows."""
        me, peer = sides[d], sides[1 - d]
        ack = (peer.isn + peer.ack()) & 0xFFFFFFFF if flags & ACK else 0
        shown[0] += 1
        if midstream and shown[0] <= 3:
            return
        src, dst = (client, server) if d == 0 else (server, client)
        out.append(
            Segment(0.0, src[0], dst[0], src[1], dst[1], flags, (me.isn + off) & 0xFFFFFFFF, ack, win, payload, i)
        )
        end = off + payload + (1 if flags & (SYN | FIN) else 0)
        if me.hi is not None and payload and end <= me.hi:
            if keepalive:
                truth.keepalives += 1
            else:
                truth.retransmissions += 1
        if me.hi is None:
            me.accounted = off + (1 if flags & SYN else 0)
        me.hi = end if me.hi is None else max(me.hi, end)
        if payload or flags & FIN:  # (a FIN's sequence number counts as seen)
            me.captured.append((off, end - (1 if flags & SYN else 0)))
        if flags & ACK and not flags & RST and peer.accounted is not None:
            _count_gaps(peer, peer.ack(), truth, established=not midstream)

    # handshake: the SYN and the SYN-ACK take one sequence number each
    emit(0, SYN, -1, 0, 64240)
    sides[0].received.append((-1, 0))
    emit(1, SYN | ACK, -1, 0, 65160)
    sides[1].received.append((-1, 0))
    emit(0, ACK, 0, 0)
    for d, total in ((0, rng.randrange(1, 3 * MSS)), (1, rng.randrange(2 * MSS, 12 * MSS))):
        _burst(d, total, sides, rng, events, emit)
    if i % 3 == 0:  # a pause with a keep-alive probe from the client: one byte below what it has sent
        c = sides[0]
        emit(0, ACK, c.nxt - 1, 1, keepalive=True)
        emit(1, ACK, sides[1].nxt, 0)
    c, s = sides
    if truth.teardown == "dirty-close":
        emit(1, FIN | ACK, s.nxt, 0)
        s.received.append((s.nxt, s.nxt + 1))
        emit(0, ACK, c.nxt, 0)
        emit(0, RST | ACK, c.nxt, 0, 0)
    elif truth.teardown == "graceful":
        emit(0, FIN | ACK, c.nxt, 0)
        c.received.append((c.nxt, c.nxt + 1))
        emit(1, FIN | ACK, s.nxt, 0)
        s.received.append((s.nxt, s.nxt + 1))
        emit(0, ACK, c.nxt + 1, 0)
    else:
        emit(1, RST | ACK, s.nxt, 0, 0)
    return out, truth


def _burst(d: int, total: int, sides: list[_Side], rng: random.Random, events: float, emit) -> None:
    """Direction `d` sends `total` bytes in segments of at most MSS, each subject to an event with
    probability `events`; the receiver acknowledges every second segment it gets and at the end."""
    me = sides[d]
    pieces = []
    while total > 0:
        size = min(MSS, total)
        pieces.append((me.nxt, size))
        me.nxt += size
        total -= size
    plan = [rng.choice(LOSS_EVENTS) if rng.random() < events else "" for _ in pieces]
    later: list[tuple[int, int]] = []  # lost upstream: sent again after the burst
    got = 0
    k = 0
    while k < len(pieces):
        off, size = pieces[k]
        event = plan[k]
        if event == "reorder" and k + 1 < len(pieces) and not plan[k + 1]:
            order = [pieces[k + 1], pieces[k]]
            k += 2
        else:
            order = [pieces[k]]
            k += 1
        for off, size in order:
            if event == "upstream":
                later.append((off, size))
                continue
            if event == "missed":  # the receiver has it, the capture does not
                me.received.append((off, off + size))
            else:
                emit(d, PSH | ACK, off, size)
                me.received.append((off, off + size))
                if event == "retransmit":
                    emit(d, PSH | ACK, off, size)
            got += 1
            if got % 2 == 0:
                emit(1 - d, ACK, sides[1 - d].nxt, 0)
    emit(1 - d, ACK, sides[1 - d].nxt, 0)
    for off, size in later:  # the sender's retransmissions of what was lost, each acknowledged
        emit(d, PSH | ACK, off, size)
        me.received.append((off, off + size))
        emit(1 - d, ACK, sides[1 - d].nxt, 0)


def _count_gaps(side: _Side, acked: int, truth: LossTruth, established: bool) -> None:
    """The receiver acknowledges `side`'s bytes below `acked`: each run of bytes below it that the
    capture never showed, above what is already accounted for, is a gap."""
    if acked <= side.accounted:
        return
    seen = sorted((a, b) for a, b in side.captured if b > side.accounted)
    pos = side.accounted
    for a, b in seen:
        if a >= acked:
            break
        if a > pos and established:
            truth.gaps += 1
            truth.missed_bytes += a - pos
        pos = max(pos, b)
    if pos < acked:
        if established:
            truth.gaps += 1
            truth.missed_bytes += acked - pos
        pos = acked
    side.accounted = pos


def _interleaved(
    conns: Iterable[list[Segment]], rng: random.Random, concurrency: int, start: float
) -> Iterator[Segment]:
    """The connections' segments interleaved, `concurrency` connections at a time (the next one
    starting when one ends), each at a new time, 0.1 to 0.5 ms after the one before."""
    active: list[Iterator[Segment]] = []
    pending = iter(conns)
    t = start
    more = True
    while more or active:
        while more and len(active) < concurrency:
            nxt = next(pending, None)
            if nxt is None:
                more = False
                break
            active.append(iter(nxt))
        if not active:
            break
        k = rng.randrange(len(active))
        seg = next(active[k], None)
        if seg is None:
            active[k] = active[-1]
            active.pop()
            continue
        t = round(t + 0.0001 + rng.random() * 0.0004, 6)
        yield Segment(
            t, seg.src, seg.dst, seg.sport, seg.dport, seg.flags, seg.seq, seg.ack, seg.win, seg.payload, seg.conn
        )


def damaged(data: bytes, rng: random.Random, changes: int) -> bytes:
    """`data` with 1 to `changes` bytes set at random, and three times in ten cut at a random length."""
    out = bytearray(data)
    for _ in range(rng.randint(1, changes)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    if rng.random() < 0.3:
        out = out[: rng.randrange(len(out))]
    return bytes(out)


# -- frames ---------------------------------------------------------------------------------------
def _csum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@functools.lru_cache(maxsize=4096)
def _addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def ip_packet(seg: Segment, bad_checksum: bool = False) -> bytes:
    """IPv4 or IPv6 + TCP with valid checksums (unless `bad_checksum`)."""
    payload = b"a" * seg.payload
    src, dst = _addr(seg.src), _addr(seg.dst)
    tcp = struct.pack("!HHIIBBHHH", seg.sport, seg.dport, seg.seq, seg.ack, 5 << 4, seg.flags, seg.win, 0, 0)
    seg_bytes = tcp + payload
    pseudo = src.packed + dst.packed + struct.pack("!HH", 6, len(seg_bytes))
    ck = _csum(pseudo + seg_bytes)
    if bad_checksum:
        ck ^= 0x5A5A
    seg_bytes = seg_bytes[:16] + struct.pack("!H", ck) + seg_bytes[18:]
    if src.version == 4:
        hdr = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg_bytes), seg.conn & 0xFFFF, 0x4000, 64, 6, 0, src.packed, dst.packed
        )
        hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
        return hdr + seg_bytes
    return struct.pack("!IHBB16s16s", 0x60000000, len(seg_bytes), 6, 64, src.packed, dst.packed) + seg_bytes


LINKS = ("ethernet", "vlan", "qinq", "pppoe", "sll", "sll2", "raw", "null", "loop")
LINKTYPE = {
    "ethernet": 1,
    "vlan": 1,
    "qinq": 1,
    "pppoe": 1,
    "sll": 113,
    "sll2": 276,
    "raw": 101,
    "null": 0,
    "loop": 108,
}
_MAC = bytes.fromhex("020000000001020000000002")


def frame(link: str, ip: bytes) -> bytes:
    v6 = ip[0] >> 4 == 6
    etype = 0x86DD if v6 else 0x0800
    if link == "ethernet":
        return _MAC + struct.pack("!H", etype) + ip
    if link == "vlan":
        return _MAC + struct.pack("!HHH", 0x8100, 42, etype) + ip
    if link == "qinq":
        return _MAC + struct.pack("!HHHHH", 0x88A8, 100, 0x8100, 42, etype) + ip
    if link == "pppoe":
        ppp = 0x0057 if v6 else 0x0021
        return (
            _MAC + struct.pack("!HHHHHH", 0x88A8, 7, 0x8864, 0x1100, 0x1234, len(ip) + 2) + struct.pack("!H", ppp) + ip
        )
    if link == "sll":
        return struct.pack("!HHH8sH", 0, 1, 6, _MAC[:6] + b"\0\0", etype) + ip
    if link == "sll2":
        return struct.pack("!HHIHBB8s", etype, 0, 1, 1, 0, 6, _MAC[:6] + b"\0\0") + ip
    if link == "raw":
        return ip
    if link == "null":
        return struct.pack("<I", 30 if v6 else 2) + ip
    if link == "loop":
        return struct.pack("!I", 24 if v6 else 2) + ip
    raise ValueError(link)


# -- writers --------------------------------------------------------------------------------------
Record = typing.Tuple[float, int, bytes]  # time, link type, frame


def pcap_header(linktype: int) -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)


def pcap_record(ts: float, data: bytes) -> bytes:
    sec = int(ts)
    return struct.pack("<IIII", sec, round((ts - sec) * 1e6), len(data), len(data)) + data


def write_pcap(
    fh: BinaryIO, records: Iterable[Record], linktype: int, nanos: bool = False, big_endian: bool = False
) -> None:
    o = ">" if big_endian else "<"
    fh.write(struct.pack(o + "IHHiIII", 0xA1B23C4D if nanos else 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
    rec = struct.Struct(o + "IIII")
    for ts, _lt, data in records:
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nanos else 1e6))
        fh.write(rec.pack(sec, frac, len(data), len(data)))
        fh.write(data)


def write_pcapng(
    fh: BinaryIO,
    records: Iterable[Record],
    tsresol: dict[int, int] | None = None,
    big_endian: bool = False,
    simple: bool = False,
) -> None:
    """One interface per link type met (in order of first use), each with its own if_tsresol (10^-n)."""
    o = ">" if big_endian else "<"
    fh.write(struct.pack(o + "IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28))
    ifaces: dict[int, int] = {}
    resol = tsresol or {}
    for ts, lt, data in records:
        if lt not in ifaces:
            ifaces[lt] = len(ifaces)
            r = resol.get(lt, 6)
            opts = struct.pack(o + "HHB3x", 9, 1, r) + struct.pack(o + "HH", 0, 0)
            blen = 20 + len(opts)
            fh.write(struct.pack(o + "IIHHI", 1, blen, lt, 0, 262144) + opts + struct.pack(o + "I", blen))
        iface = ifaces[lt]
        pad = (-len(data)) % 4
        if simple and iface == 0:
            blen = 16 + len(data) + pad
            fh.write(struct.pack(o + "III", 3, blen, len(data)) + data + b"\0" * pad + struct.pack(o + "I", blen))
            continue
        r = resol.get(lt, 6)
        micros = round(ts * 1e6)  # integer arithmetic: a float cannot hold epoch nanoseconds
        ticks = micros * 10 ** (r - 6) if r >= 6 else micros // 10 ** (6 - r)
        blen = 32 + len(data) + pad
        fh.write(
            struct.pack(o + "IIIIIII", 6, blen, iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data))
            + data
            + b"\0" * pad
            + struct.pack(o + "I", blen)
        )


NDIS_PROVIDER = bytes.fromhex("6e00d62e29470946b4233ee7bcd678ef")


def netevent(data: bytes, ts: float) -> bytes:
    """An ETW NetEvent (NetMon media 0xFFE0) carrying an Ethernet frame from NDIS-PacketCapture."""
    header = bytearray(89)
    struct.pack_into("<Q", header, 16, int((ts + 11644473600) * 1e7))
    header[24:40] = NDIS_PROVIDER
    struct.pack_into("<H", header, 40, 1001)
    struct.pack_into("<Q", header, 48, 0x1 | 0x40000000 | 0x80000000)
    user = struct.pack("<III", 7, 0, len(data)) + data
    struct.pack_into("<H", header, 86, len(user))
    return bytes(header) + user


def write_netmon(
    fh: BinaryIO, records: Iterable[Record], minor: int = 1, metadata: bool = True, netevent_every: int = 0
) -> None:
    """NetMon 2.`minor` (0-3). Media per frame: Ethernet 1, other link types 0xE000|linktype.

    With `metadata`, a capture-filter frame (0xFFFF) and a network-info frame (0xFFFD) are appended
    after the packets, as NetMon does; with `netevent_every` = k, every k-th Ethernet frame is
    wrapped in a NetEvent (0xFFE0) frame (needs 2.1+, which has per-frame media types).
    """
    records = list(records)
    start = records[0][0] if records else 0.0
    tm = time.gmtime(int(start))
    header = bytearray(128)
    header[0:4] = b"GMBU"
    header[4], header[5] = minor, 2
    struct.pack_into(
        "<H8H",
        header,
        6,
        1,
        tm.tm_year,
        tm.tm_mon,
        (tm.tm_wday + 1) % 7,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        int((start - int(start)) * 1000),
    )
    base = calendar.timegm(tm) + int((start - int(start)) * 1000) / 1000
    frames: list[tuple[float, int, bytes]] = []
    for i, (ts, lt, data) in enumerate(records):
        media = 1 if lt == 1 else 0xE000 | lt
        if netevent_every and lt == 1 and i % netevent_every == 0 and minor >= 1:
            media, data = 0xFFE0, netevent(data, ts)
        frames.append((ts, media, data))
    if metadata and minor >= 1:
        end = records[-1][0] if records else 0.0
        frames.append((end, 0xFFFF, "tcp".encode("utf-16-le")))
        frames.append((end, 0xFFFD, b"\x01\x00" + b"\0" * 30))
    fh.write(bytes(header))
    offsets = []
    pos = 128
    for ts, media, data in frames:
        offsets.append(pos)
        delta = round((ts - base) * 1e6)
        rec = struct.pack("<qII", delta, len(data), len(data)) + data
        if minor >= 1:
            rec += struct.pack("<H", media)
        if minor >= 2:
            rec += struct.pack("<I", 0xFFFFFFFF)
        if minor >= 3:
            rec += struct.pack("<QB", (round(ts * 1e6) + 11644473600 * 10**6) * 10, 0)
        fh.write(rec)
        pos += len(rec)
    fh.write(struct.pack(f"<{len(offsets)}I", *offsets))
    fh.seek(24)
    fh.write(struct.pack("<II", pos, 4 * len(offsets)))
    fh.seek(0, 2)


_PORT_NAMES = {443: "HTTPS", 80: "HTTP"}


def _flag_text(flags: int, ellipsis: bool) -> str:
    bits = (0x80, 0x40, 0x20, 0x10, 8, 4, 2, 1)
    text = "".join(ch if flags & bit else "." for ch, bit in zip_strict("CEUAPRSF", bits))
    return text.replace("...", "…") if ellipsis else text


def write_netmon_text(
    fh,
    segments: Iterable[Segment],
    bad_checksum_from: str | None = None,
    ellipsis: bool = False,
    tabs: bool = False,
    addresses: bool = False,
) -> None:
    """NetMon frame-summary lines (one per segment); conversation ids from the segments' `conn`."""
    sep = "\t" if tabs else " "
    first = None
    for n, seg in enumerate(segments, 1):
        first = seg.ts if first is None else first
        tod = time.strftime("%H:%M:%S", time.gmtime(seg.ts)) + f".{int((seg.ts % 1) * 1e7):07d}"
        sport = f"{_PORT_NAMES[seg.sport]}({seg.sport})" if seg.sport in _PORT_NAMES else str(seg.sport)
        dport = f"{_PORT_NAMES[seg.dport]}({seg.dport})" if seg.dport in _PORT_NAMES else str(seg.dport)
        bad = "[Bad CheckSum]" if bad_checksum_from and seg.src == bad_checksum_from else ""
        seq = f"{seg.seq} - {seg.seq + seg.payload}" if seg.payload else str(seg.seq)
        desc = (
            f"TCP:{bad}Flags={_flag_text(seg.flags, ellipsis)}, SrcPort={sport}, DstPort={dport}, "
            f"PayloadLen={seg.payload}, Seq={seq}, Ack={seg.ack}, Win={seg.win} (scale factor 0x0) = {seg.win}"
        )
        cols = [str(n), tod, f"{seg.ts - first:.7f}"]
        if addresses:
            cols += [seg.src, seg.dst]
        cols += ["TCP", desc, f"{{TCP:{seg.conn + 1}, IPv4:1}}"]
        fh.write(sep.join(cols) + "\n")


def records_for(segments: Iterable[Segment], link: str = "ethernet") -> Iterator[Record]:
    lt = LINKTYPE[link]
    for seg in segments:
        yield seg.ts, lt, frame(link, ip_packet(seg))


def write_file(path: Path, fmt: str, records: Iterable[Record], linktype: int = 1) -> Path:
    with open(path, "wb") as fh:
        if fmt == "pcap":
            write_pcap(fh, records, linktype)
        elif fmt == "pcap-ns-be":
            write_pcap(fh, records, linktype, nanos=True, big_endian=True)
        elif fmt == "pcapng":
            write_pcapng(fh, records)
        elif fmt.startswith("netmon2."):
            write_netmon(fh, records, minor=int(fmt[-1]))
        else:
            raise ValueError(fmt)
    return path
