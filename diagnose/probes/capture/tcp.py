"""Per-connection TCP state machine: who opened, who closed, who reset, and how it ended.

Each connection is tracked from its packets in capture order. The originator is the sender of the
first SYN (without ACK); a connection first seen through a SYN-ACK, or midstream from a well-known
port, is flipped so that the client side is the originator (Zeek marks this with `^`).

The state kept per live connection is one small list (see the `C_*` indices), so memory grows with
the number of connections that are open at the same time, not with the number of packets: a
connection that has been reset or closed by both sides is finalised and dropped once the capture
has moved `LINGER` seconds past its close, and a new SYN on a closed connection starts a new one
(port reuse), as tshark does with `tcp.stream`.

Zeek-compatible `conn_state` and `history` (see Zeek `base/protocols/conn/main.zeek`):
letters s h a d f r c w i q t g ^, upper case from the originator; c w t g are logarithmic (the 1st,
10th, 100th ... instance). Not implemented: `x` (Zeek's analysis limits; ours is the bound on
out-of-order ranges below).

Sequence space, per direction, as Zeek's TCP analyzer and reassembler keep it (TCP.cc
`update_last_seq`, TCP_Reassembler.cc `Undelivered`), in 32-bit arithmetic (wraparound: every
comparison is of the signed 32-bit difference):
* `C_HI + d`: the highest sequence end seen (Zeek's last_seq); DEAD after the direction's RST.
  A segment's end is seq + payload, + 1 for SYN and FIN, without the payload of a RST. A segment
  with payload that does not end beyond it is a retransmission (`t`), counted with Zeek's rules:
  SYN and RST segments more than 1 MiB off are not trusted, nor segments sent after the
  direction's own RST. So a segment that fills a hole late (reordered, or lost before the capture
  point and sent again) counts; one that is sent again with new data beyond (a bigger segment) does
  not, nor does a SYN or FIN sent again without data (tshark flags both). A 1-byte segment one below
  it (a keep-alive probe with its garbage byte, as Windows sends them) is a retransmission for Zeek
  too; it is counted apart (`keepalives`) and is not evidence of loss.
* `C_NXT + d`: the byte up to which the direction's stream is accounted for (Zeek's
  last_reassem_seq): every byte below was seen, or declared missing. Starts after the SYN, or at
  the first segment seen (a connection picked up midstream: nothing before it is missing); a
  FIN's sequence number counts as seen.
* `C_OOO + d`: None, or the ranges seen above `C_NXT + d` (out of order, behind a hole), as a flat
  sorted list [start, end, start, end, ...]; at most MAX_RANGES ranges (beyond, the two closest
  merge: the hole between is taken as seen). While there are any, `C_HI + d` is above `C_NXT + d`:
  so a segment that starts where both are (the common case, which the readers' inline paths and
  the C accelerator do in place) needs no look at the ranges.
* A content gap (`g`) is what the peer acknowledges that was never seen: an ACK beyond
  `C_NXT + d` (capped at the direction's FIN) declares each hole below it missing, one gap per
  hole; `missed_bytes` adds their sizes. As in Zeek, only while both sides are established or
  closed from established (never for a connection picked up midstream); an ACK in a RST
  still moves the accounted byte, without a gap. Unlike Zeek, a segment cut short by the snap
  length counts as seen (its length is the IP header's): a short snap length is no loss. Also
  left out of Zeek's rules: a FIN that moves the highest end back (Zeek trusts it on connections
  over 2 GB that showed only SYN and FIN), data from before a direction's first segment (Zeek does
  not reassemble it), and a range that begins exactly at an ACK (joined here; Zeek counts an empty
  gap for it later).

Retransmissions, keep-alives, gaps and missed bytes are counted in the `C_LOG` dict (keys t0 t1
k0 k1 g0 g1 m0 m1, and `l`: the frame of the first retransmission or gap, keep-alives aside). A NetMon
text export shows no TCP details for frames of protocols above TCP, so the figures of connections read
from one (str keys) are not reported (`loss_of`).
"""

from __future__ import annotations

import operator
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

from diagnose.compat import SLOTS

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
CONTROL = FIN | SYN | RST

# The teardown labels, in the order reports show them.
TEARDOWNS = ("graceful", "dirty-close", "reset-after-own-fin", "reset", "refused", "unanswered", "half-closed", "open")

# Ports whose side is the server when no SYN was captured (as in the corpus oracle), plus < 1024.
WELL_KNOWN = frozenset({21, 22, 23, 25, 53, 80, 110, 139, 143, 443, 445, 993, 995, 1433, 3128, 3389, 8080, 8443})

M32 = 0xFFFFFFFF
HALF = 0x80000000
BIG_JUMP = 1 << 20  # Zeek's TOO_LARGE_SEQ_DELTA: a SYN or RST this far off is not trusted
DEAD = -1  # C_HI + d after the direction's RST: its sequence numbers are no longer trusted
MAX_RANGES = 32  # out-of-order ranges kept per direction

LINGER = 30.0  # seconds a closed connection is kept for late packets (Zeek: tcp_close_delay 5 s)
SWEEP_EVERY = 1 << 14  # frames between sweeps of closed connections (and releases of read pages)

# Zeek endpoint states
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)

# indices of the per-connection list; the eight slots from C_SEQ hold the sequence numbers of the
# last SYN-ACK (C_SEQ + d), SYN (+ 2 + d), FIN (+ 4 + d: the FIN's own sequence number, after its
# payload) and RST (+ 6 + d) of each direction d, which tell a retransmission (same letter once) from
# a new instance (the letter again); then the sequence space of each direction (C_HI, C_NXT, C_OOO:
# see the module docstring)
(
    C_FIRST,
    C_LAST,
    C_PK0,
    C_PK1,
    C_SEEN,
    C_HIST,
    C_T0,
    C_TL,
    C_ST0,
    C_ST1,
    C_FIN0,
    C_FIN1,
    C_FTS0,
    C_FTS1,
    C_RST0,
    C_RST1,
    C_RTS0,
    C_RTS1,
    C_RZW,
    C_KEY,
    C_CSUM,
    C_LOG,
    C_SRC,
    C_CLOSED,
    C_DONE,
    C_SYNS,
    C_SYNACK,
    C_RKEY,
    C_ORDER,
    C_SEQ,
) = range(30)
C_HI = C_SEQ + 8
C_NXT = C_HI + 2
C_OOO = C_NXT + 2
_WIDTH = C_OOO + 2

# finishing-order key of a connection (C_ORDER), set when it is handed to the sink:
# (source index, frame, phase, close time, frame). Phase 0: a port reuse while frame `frame` was read;
# 1: a sweep after frame `frame` (then by close time and the frame that closed it); 2: end of the file
# (frame = END, then by first frame). Each connection's key depends only on its own packets and on
# the frames at which sweeps happen, never on other connections, so the connections of a capture
# split between processes by ownership (`owner_of`) come out in the same order when merged by key.
END = 1 << 62

# bits of C_SEEN (once-per-direction letters), originator bit first
SEEN_A = (1, 2)
SEEN_D = (4, 8)
SEEN_I = (16, 32)
SEEN_Q = (64, 128)
CLEAN_CLOSE = (256, 512)  # the direction closed (FIN) while established (Zeek: CLOSED after ESTABLISHED)


@dataclass(frozen=True, **SLOTS)
class Connection:
    """One finished (or still open at capture end) TCP connection."""

    source: str
    originator: str
    responder: str
    orig_ip: str
    resp_ip: str
    resp_port: int
    conn_state: str
    history: str
    teardown: str
    first_fin_by: str
    first_reset_by: str
    fin_to_rst_seconds: float | None
    rst_zero_window: bool | None
    first_frame: int
    last_frame: int
    fin_frame: int | None
    rst_frame: int | None
    packets_orig: int
    packets_resp: int
    bad_checksums: int
    first_time: float
    last_time: float
    loss_analysed: bool = False  # sequence numbers analysed (not a NetMon text export)
    retransmissions: int = 0  # packets with retransmitted payload, keep-alive probes aside (both directions)
    keepalives: int = 0  # 1-byte keep-alive probes (Zeek counts them as retransmissions)
    gaps: int = 0  # content gaps: data the peer acknowledged that the capture never showed
    missed_bytes: int = 0
    first_loss_frame: int | None = None  # first retransmission or gap (keep-alives aside)

    @property
    def subject(self) -> str:
        return f"{self.originator}>{self.responder}"

    @property
    def loss_before_end(self) -> bool:
        """A retransmission or content gap before the connection's first RST (any, without one)."""
        return self.first_loss_frame is not None and (self.rst_frame is None or self.first_loss_frame < self.rst_frame)

    def __reduce__(self) -> tuple:
        # pickled (from worker processes) as its field values: rebuilt by __init__, much faster
        # than the dataclass default, which sets the fields one by one through fields()
        return Connection, _connection_values(self)


_connection_values = operator.attrgetter(*(f.name for f in fields(Connection)))


def _ip_text(raw: bytes) -> str:
    ntop = _NTOP.get(len(raw))
    if ntop is None:
        ntop = _load_ntop(len(raw))
    return ntop(raw)


_NTOP: dict[int, Callable[[bytes], str]] = {}  # address length -> bytes-to-text (socket.inet_ntop)


def _load_ntop(size: int) -> Callable[[bytes], str]:
    """socket is imported on first use, not at start-up (only facts need address text)."""
    import functools
    import socket

    _NTOP[4] = functools.partial(socket.inet_ntop, socket.AF_INET)
    _NTOP[16] = functools.partial(socket.inet_ntop, socket.AF_INET6)
    return _NTOP.get(size, _NTOP[16])


def endpoints_of(key: bytes | str) -> tuple[str, str, str, str, int]:
    """(originator, responder, orig_ip, resp_ip, resp_port) from a key in originator order.

    A bytes key is src + dst + sport + dport (IPv4 12 bytes, IPv6 36 bytes); a str key (NetMon text
    export without address columns) is `src|dst|sport|dport|conv`.
    """
    if isinstance(key, str):
        src, dst, sport_text, dport_text, _conv = key.split("|")
        return f"{src}:{sport_text}", f"{dst}:{dport_text}", src, dst, int(dport_text)
    n = (len(key) - 4) // 2
    src, dst = _ip_text(key[:n]), _ip_text(key[n : 2 * n])
    sport = (key[2 * n] << 8) | key[2 * n + 1]
    dport = (key[2 * n + 2] << 8) | key[2 * n + 3]
    if n == 16:
        return f"[{src}]:{sport}", f"[{dst}]:{dport}", src, dst, dport
    return f"{src}:{sport}", f"{dst}:{dport}", src, dst, dport


def reverse_key(key: bytes) -> bytes:
    n = (len(key) - 4) // 2
    return key[n : 2 * n] + key[:n] + key[2 * n + 2 : 2 * n + 4] + key[2 * n : 2 * n + 2]


def _ports(key: bytes | str) -> tuple[int, int]:
    if isinstance(key, str):
        parts = key.split("|")
        return int(parts[2]), int(parts[3])
    n = (len(key) - 4) // 2
    return (key[2 * n] << 8) | key[2 * n + 1], (key[2 * n + 2] << 8) | key[2 * n + 3]


def owner_of(key: bytes | str, jobs: int) -> int:
    """The worker (0 .. jobs-1) that tracks the connection of `key`: the low bytes of the two ports
    XORed, modulo `jobs`, the same for both directions. The fused pcap loop computes the same from
    frame bytes 35 and 37."""
    if isinstance(key, str):
        _src, _dst, sport, dport, _conv = key.split("|")
        return ((int(sport) ^ int(dport)) & 0xFF) % jobs
    return (key[-1] ^ key[-3]) % jobs


def _server_like(port: int) -> bool:
    return port in WELL_KNOWN or port < 1024


class Tracker:
    """Feeds TCP segments into per-connection state; hands finished connections (the raw state
    list; `build_connection` makes a `Connection` of it) to `sink`, in finishing order (`C_ORDER`).

    With `jobs` > 1 this tracker is one of `jobs` workers that all read the same capture: it keeps
    only the connections it owns (`owner_of(key, jobs) == index`) and ignores other segments.
    """

    def __init__(self, sink: Callable[[list], None], jobs: int = 1, index: int = 0) -> None:
        # key (sender order) -> (connection list, direction 0 = originator / 1 = responder)
        self.conns: dict[bytes | str, tuple[list, int]] = {}
        # (close time, frame that closed it, connection), kept sorted by (time, frame)
        self.closing: deque[tuple[float, int, list]] = deque()
        self._last_close = float("-inf")
        self._unsorted = False
        self.jobs = max(1, jobs)
        self.index = index
        self.sink = sink
        self.source = ""
        self.source_index = 0
        self.sources: list[str] = []
        self.tcp_packets = 0
        self.bad_checksums = 0
        self.deadline: float | None = None  # time.monotonic() value: a sweep after it stops the reading

    def start_source(self, name: str) -> None:
        self.sources.append(name)
        self.source_index = len(self.sources) - 1

    # -- the general entry point: one TCP segment ---------------------------------------------
    def packet(
        self,
        frame: int,
        ts: float,
        key: bytes | str,
        rkey: bytes | str | None,
        flags: int,
        win: int,
        plen: int,
        seq: int,
        ack: int,
        bad: bool,
    ) -> None:
        ent = self.conns.get(key)
        if ent is None:
            if self.jobs > 1 and owner_of(key, self.jobs) != self.index:
                return  # another worker's connection
            if flags & 0x17 == SYN and not bad:
                self.open_syn(frame, ts, key, rkey, seq, plen)
                return
            c, d = self._new(frame, ts, key, rkey, flags)
        else:
            c, d = ent
            if flags & 0x12 == SYN and c[C_CLOSED] is not None and seq != c[C_SEQ + 2 + d]:
                # a new SYN on a connection that has ended: port reuse, a new connection
                self._finish(c, (self.source_index, frame, 0, 0.0, 0))
                if flags & 0x17 == SYN and not bad:
                    self.open_syn(frame, ts, key, rkey, seq, plen)
                    return
                c, d = self._new(frame, ts, key, rkey, flags)
        if bad:
            self.bad_checksums += 1
            c[C_CSUM] += 1
            self._log_letter(c, d, "c")
        if flags & CONTROL:
            self.control(c, d, frame, ts, flags, win, plen, seq, ack)
            return
        c[C_LAST] = frame
        c[C_PK0 + d] += 1
        if flags & ACK:  # no SYN, FIN or RST
            seen = c[C_SEEN]
            if plen > 0:
                if not seen & SEEN_D[d]:
                    self._first(c, d, "d", SEEN_D[d])
            elif not seen & SEEN_A[d]:
                self._first(c, d, "a", SEEN_A[d])
            if win == 0:
                self._log_letter(c, d, "w")
            self.sequence(c, d, flags, seq, plen, ack)
            return
        # a segment without SYN, FIN, RST or ACK
        c[C_TL] = ts
        if c[C_ST0 + d] == INACTIVE:
            c[C_ST0 + d] = PARTIAL
        if plen > 0 and not c[C_SEEN] & SEEN_D[d]:
            c[C_SEEN] |= SEEN_D[d]
            c[C_HIST] += "d" if d else "D"
        if win == 0:
            self._log_letter(c, d, "w")
        self.sequence(c, d, flags, seq, plen, ack)
        return

    def control(
        self, c: list, d: int, frame: int, ts: float, flags: int, win: int, plen: int, seq: int, ack: int
    ) -> None:
        """A segment with SYN, FIN or RST in direction `d` of connection `c`: from `packet` (which
        has found the connection, handled port reuse and counted a bad checksum), or straight from the
        fused pcap loop for a known connection, a good checksum and anything but a SYN without ACK."""
        # the first segment of the direction, or a SYN with another sequence number than the direction's
        # last one: its sequence space starts (anew)
        init = c[C_HI + d] is None or (flags & SYN and c[C_SEQ + (0 if flags & ACK else 2) + d] != seq)
        self.control_flags(c, d, frame, ts, flags, win, plen, seq)
        if flags & SYN and not flags & (FIN | RST) and init:  # what _sent does of it, in place
            c[C_HI + d] = c[C_NXT + d] = (seq + 1 + plen) & M32
            c[C_OOO + d] = None
        elif not init and not flags & SYN and c[C_HI + d] == seq and c[C_NXT + d] == seq and not (flags & RST and plen):
            # a FIN or RST where its direction is (the common case): what _sent does, in place
            if flags & FIN and not flags & RST:
                c[C_HI + d] = c[C_NXT + d] = (seq + plen + 1) & M32
        else:
            self._sent(c, d, flags, seq, plen, init)
        if flags & RST:
            c[C_HI + d] = DEAD
        # (an ACK at or below what the other direction has accounted for reveals nothing: _acked's test)
        if flags & ACK and c[C_HI + 1 - d] is not None and 0 < (ack - c[C_NXT + 1 - d]) & M32 < HALF:
            self._acked(c, 1 - d, ack)

    def control_flags(self, c: list, d: int, frame: int, ts: float, flags: int, win: int, plen: int, seq: int) -> None:
        """`control` without the sequence space: letters, endpoint states, FIN and RST frames, closing.
        The C accelerator calls it for a segment whose sequence numbers it has done itself (the cases
        `control` does in place)."""
        c[C_LAST] = frame
        c[C_PK0 + d] += 1
        c[C_TL] = ts
        st = C_ST0 + d
        if flags & SYN:
            if flags & ACK:
                if c[C_SEQ + d] != seq:
                    c[C_SEQ + d] = seq
                    c[C_HIST] += "h" if d else "H"
                c[C_SYNACK] = True
                if c[st] == INACTIVE or c[st] == PARTIAL:
                    c[st] = SYN_ACK_SENT
            else:
                if c[C_SEQ + 2 + d] != seq:
                    c[C_SEQ + 2 + d] = seq
                    c[C_HIST] += "s" if d else "S"
                c[C_SYNS] = True
                if c[st] == INACTIVE or c[st] == PARTIAL:
                    c[st] = SYN_SENT
            if not flags & (FIN | RST):
                return  # nothing closed: no zero-window letter on a SYN
            if not c[C_SEEN] & SEEN_Q[d]:
                c[C_SEEN] |= SEEN_Q[d]
                c[C_HIST] += "q" if d else "Q"
        else:
            if flags & ACK:
                if c[st] < ESTABLISHED:
                    self._active(c, d)
            elif c[st] == INACTIVE:
                c[st] = PARTIAL
            seen = c[C_SEEN]
            if plen > 0 and not seen & SEEN_D[d]:
                c[C_SEEN] |= SEEN_D[d]
                c[C_HIST] += "d" if d else "D"
            if flags & FIN and flags & RST and not seen & SEEN_I[d]:
                c[C_SEEN] |= SEEN_I[d]
                c[C_HIST] += "i" if d else "I"
        if flags & FIN:
            fin_seq = (seq + plen + (flags & SYN and 1)) & 0xFFFFFFFF  # Zeek: the FIN after the payload
            if c[C_SEQ + 4 + d] != fin_seq:
                c[C_SEQ + 4 + d] = fin_seq
                c[C_HIST] += "f" if d else "F"
            if not c[C_FIN0 + d]:
                c[C_FIN0 + d] = frame
                c[C_FTS0 + d] = ts
            if c[st] != RESET:
                if c[st] == ESTABLISHED:
                    c[C_SEEN] |= CLEAN_CLOSE[d]
                c[st] = CLOSED
        if flags & RST:
            if c[C_SEQ + 6 + d] != seq:
                c[C_SEQ + 6 + d] = seq
                c[C_HIST] += "r" if d else "R"
            if not c[C_RST0 + d]:
                c[C_RST0 + d] = frame
                c[C_RTS0 + d] = ts
                if c[C_RZW] is None:
                    c[C_RZW] = win == 0
            c[st] = RESET
        elif win == 0 and not flags & SYN:
            self._log_letter(c, d, "w")
        if c[C_CLOSED] is None and (c[C_RST0] or c[C_RST1] or (c[C_FIN0] and c[C_FIN1])):
            c[C_CLOSED] = ts
            self.closing.append((ts, frame, c))
            if ts < self._last_close:
                self._unsorted = True  # time went backwards: sort before the next sweep
            else:
                self._last_close = ts

    def open_syn(self, frame: int, ts: float, key: bytes | str, rkey: bytes | str | None, seq: int, plen: int) -> None:
        """A SYN without ACK, FIN or RST (and a good checksum) that starts a connection: the state
        `_new` and `packet` would make of it, built at once."""
        if rkey is None:
            if isinstance(key, bytes) and len(key) == 12:  # IPv4
                rkey = key[4:8] + key[:4] + key[10:12] + key[8:10]
            else:
                rkey = reverse_key(key) if isinstance(key, bytes) else _reverse_text_key(key)
        hi = (seq + 1 + plen) & 0xFFFFFFFF  # the SYN and its data (see _sent)
        c = [
            frame,
            frame,
            1,
            0,
            0,
            "S",
            ts,
            ts,
            SYN_SENT,
            INACTIVE,
            0,
            0,
            None,
            None,
            0,
            0,
            None,
            None,
            None,
            key,
            0,
            None,
            self.source_index,
            None,
            False,
            True,
            False,
            rkey,
            None,
            None,
            None,
            seq,
            None,
            None,
            None,
            None,
            None,
            hi,
            None,
            hi,
            None,
            None,
            None,
        ]
        conns = self.conns
        conns[key] = (c, 0)
        conns[rkey] = (c, 1)

    def _new(self, frame: int, ts: float, key: bytes | str, rkey: bytes | str | None, flags: int) -> tuple[list, int]:
        if rkey is None:
            rkey = reverse_key(key) if isinstance(key, bytes) else _reverse_text_key(key)
        d = 0
        if flags & 0x12 == 0x12:
            d = 1
        elif not flags & SYN:
            sport, dport = _ports(key)
            if _server_like(sport) and not _server_like(dport):
                d = 1
        c = [
            frame,
            frame,
            0,
            0,
            0,
            "^" if d else "",
            ts,
            ts,
            INACTIVE,
            INACTIVE,
            0,
            0,
            None,
            None,
            0,
            0,
            None,
            None,
            None,
            rkey if d else key,
            0,
            None,
            self.source_index,
            None,
            False,
            False,
            False,
            key if d else rkey,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ]
        ent = (c, d)
        self.conns[key] = ent
        self.conns[rkey] = (c, 1 - d)
        return ent

    # -- sequence space: retransmissions, content gaps --------------------------------------------
    def sequence(self, c: list, d: int, flags: int, seq: int, plen: int, ack: int) -> None:
        """The sequence numbers of a segment without SYN, FIN or RST in direction `d`: what it sends,
        then what its ACK acknowledges of the other direction. The readers' inline paths (and the C
        accelerator) do the common case themselves, a segment that starts where its direction's
        `C_HI` and `C_NXT` both are, with an ACK that reveals no gap (nothing from the other direction
        yet, or not beyond its `C_NXT`), and call this for every other."""
        self._sent(c, d, flags, seq, plen, c[C_HI + d] is None)
        if flags & ACK:
            self._acked(c, 1 - d, ack)

    def _sent(self, c: list, d: int, flags: int, seq: int, plen: int, init: int) -> None:
        """Direction `d` sends a segment: its highest sequence end, a retransmission, its data. `init`:
        the first segment of the direction, or a SYN that starts it anew."""
        syn = 1 if flags & SYN else 0
        fin = 1 if flags & FIN else 0
        rst = flags & RST
        end = (seq + syn + fin + (0 if rst else plen)) & M32
        hi = c[C_HI + d]
        if init:
            c[C_HI + d] = end
            c[C_NXT + d] = (seq + syn) & M32
            c[C_OOO + d] = None
        elif hi != DEAD:  # (nothing after the direction's own RST is trusted)
            delta = ((end - hi + HALF) & M32) - HALF
            if (syn or rst) and not -BIG_JUMP <= delta <= BIG_JUMP:
                pass  # not trusted
            elif delta > 0:
                c[C_HI + d] = end
            elif plen > 0:
                log = self._log_letter(c, d, "t")
                if plen == 1 and not flags & CONTROL and seq == (hi - 1) & M32:
                    name = "k1" if d else "k0"
                    log[name] = log.get(name, 0) + 1
                elif "l" not in log:
                    log["l"] = c[C_LAST]
        if (plen or fin) and not rst:
            start = (seq + syn) & M32
            self._deliver(c, d, start, (start + plen + fin) & M32)

    def _deliver(self, c: list, d: int, start: int, stop: int) -> None:
        """Bytes [start, stop) of direction `d` were seen."""
        nxt = c[C_NXT + d]
        if not 0 < (stop - nxt) & M32 < HALF:
            return  # nothing beyond what is accounted for
        ranges = c[C_OOO + d]
        if (start - nxt) & M32 == 0 or (start - nxt) & M32 >= HALF:  # reaches the accounted byte
            nxt = stop
            if ranges is not None:
                while ranges and not 0 < (ranges[0] - nxt) & M32 < HALF:  # the next range joins on
                    if 0 < (ranges[1] - nxt) & M32 < HALF:
                        nxt = ranges[1]
                    del ranges[:2]
                if not ranges:
                    c[C_OOO + d] = None
            c[C_NXT + d] = nxt
            return
        if ranges is None:
            c[C_OOO + d] = [start, stop]
            return
        _insert_range(ranges, nxt, start, stop)

    def _acked(self, c: list, p: int, ack: int) -> None:
        """The other direction acknowledges direction `p`'s bytes below `ack`: each hole below it
        that was never seen is a content gap."""
        if c[C_HI + p] is None:
            return  # `p` has sent nothing yet: its sequence space starts with its first segment
        if c[C_FIN0 + p]:
            after_fin = (c[C_SEQ + 4 + p] + 1) & M32
            if 0 < (ack - after_fin) & M32 < HALF:
                ack = after_fin  # an ACK beyond the FIN does not reveal more
        nxt = c[C_NXT + p]
        if not 0 < (ack - nxt) & M32 < HALF:
            return
        holes = []
        ranges = c[C_OOO + p]
        if ranges is not None:
            while ranges and (ack - ranges[0]) & M32 < HALF:  # a range that begins at or below the ACK
                holes.append((ranges[0] - nxt) & M32)
                if 0 < (ranges[1] - nxt) & M32 < HALF:
                    nxt = ranges[1]
                del ranges[:2]
            if not ranges:
                c[C_OOO + p] = None
        if 0 < (ack - nxt) & M32 < HALF:
            holes.append((ack - nxt) & M32)
            nxt = ack
        c[C_NXT + p] = nxt
        if holes and _clean(c, p) and _clean(c, 1 - p):
            for _hole in holes:
                log = self._log_letter(c, p, "g")
            name = "m1" if p else "m0"
            log[name] = log.get(name, 0) + sum(holes)
            if "l" not in log:
                log["l"] = c[C_LAST]

    def _first(self, c: list, d: int, letter: str, bit: int) -> None:
        """First pure ACK / data packet in a direction: history letter and endpoint state."""
        c[C_SEEN] |= bit
        c[C_HIST] += letter if d else letter.upper()
        if c[C_ST0 + d] < ESTABLISHED:
            self._active(c, d)

    def _active(self, c: list, d: int) -> None:
        st = C_ST0 + d
        state = c[st]
        if state == INACTIVE:
            c[st] = PARTIAL
        elif state == SYN_SENT and d == 0 and c[C_SYNACK]:
            c[st] = ESTABLISHED
            if c[C_ST1] == SYN_ACK_SENT:
                c[C_ST1] = ESTABLISHED
        elif state == SYN_ACK_SENT and d == 1 and c[C_ST0] == ESTABLISHED:
            c[st] = ESTABLISHED

    def _log_letter(self, c: list, d: int, letter: str) -> dict:
        """c, w, t, g: logarithmic letters (1st, 10th, 100th ... instance); returns the counts."""
        log = c[C_LOG]
        if log is None:
            log = c[C_LOG] = {}
        name = letter + str(d)
        n = log.get(name, 0) + 1
        log[name] = n
        while n % 10 == 0:
            n //= 10
        if n == 1:
            c[C_HIST] += letter if d else letter.upper()
        return log

    # -- finishing -------------------------------------------------------------------------------
    def sweep(self, now: float, after: int = 0) -> None:
        """Finalise every connection closed more than LINGER seconds before `now`, in the order of
        (close time, closing frame); `after` is the last frame read before this sweep. Past the
        deadline it raises `DeadlineExceeded` instead (every reader sweeps every SWEEP_EVERY frames)."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            from diagnose.bounds import DeadlineExceeded

            raise DeadlineExceeded(
                f"reading stopped at the deadline after frame {after:,}", self.sources[-1] if self.sources else None
            )
        closing = self.closing
        if self._unsorted:
            self.closing = closing = deque(sorted(closing, key=lambda t: (t[0], t[1])))
            self._unsorted = False
        limit = now - LINGER
        src = self.source_index
        while closing and closing[0][0] <= limit:
            ts, frame, c = closing.popleft()
            if not c[C_DONE]:
                self._finish(c, (src, after, 1, ts, frame))

    def _finish(self, c: list, order: tuple) -> None:
        c[C_DONE] = True
        c[C_ORDER] = order
        conns = self.conns
        key = c[C_KEY]
        ent = conns.get(key)
        if ent is not None and ent[0] is c:
            del conns[key]
            rkey = c[C_RKEY]
            ent = conns.get(rkey)
            if ent is not None and ent[0] is c:
                del conns[rkey]
        self.sink(c)

    def finish_all(self) -> None:
        """End of input: every connection still known is finalised, in the order they began."""
        src = self.source_index
        for c in sorted((c for c in self.live() if not c[C_DONE]), key=lambda c: c[C_FIRST]):
            c[C_DONE] = True
            c[C_ORDER] = (src, END, 2, 0.0, c[C_FIRST])
            self.sink(c)
        self.conns.clear()
        self.closing.clear()
        self._last_close = float("-inf")
        self._unsorted = False

    def live(self) -> Iterator[list]:
        seen: set[int] = set()
        for c, _d in self.conns.values():
            if id(c) not in seen:
                seen.add(id(c))
                yield c


def _insert_range(ranges: list[int], nxt: int, start: int, stop: int) -> None:
    """[start, stop), above `nxt`, into the sorted flat list of ranges, merged with those it touches."""
    a, b = (start - nxt) & M32, (stop - nxt) & M32  # offsets above nxt: plain integer order
    i = 0
    n = len(ranges)
    while i < n and (ranges[i + 1] - nxt) & M32 < a:  # ranges that end before it
        i += 2
    j = i
    while j < n and (ranges[j] - nxt) & M32 <= b:  # ranges it touches or overlaps
        if (ranges[j] - nxt) & M32 < a:
            a = (ranges[j] - nxt) & M32
        if (ranges[j + 1] - nxt) & M32 > b:
            b = (ranges[j + 1] - nxt) & M32
        j += 2
    ranges[i:j] = [(nxt + a) & M32, (nxt + b) & M32]
    if len(ranges) > 2 * MAX_RANGES:  # too many: the two closest ranges merge
        k = min(range(2, len(ranges), 2), key=lambda k: ((ranges[k] - ranges[k - 1]) & M32, k))
        del ranges[k - 1 : k + 1]


def _clean(c: list, x: int) -> bool:
    """Direction `x` is established, or closed from established (Zeek's is_clean)."""
    st = c[C_ST0 + x]
    return st == ESTABLISHED or (st == CLOSED and bool(c[C_SEEN] & CLEAN_CLOSE[x]))


def _reverse_text_key(key: str) -> str:
    src, dst, sport, dport, conv = key.split("|")
    return f"{dst}|{src}|{dport}|{sport}|{conv}"


def conn_state(c: list) -> str:
    """Zeek's decision order (responder RST first)."""
    os_, rs = c[C_ST0], c[C_ST1]
    o_inactive = os_ in (INACTIVE, PARTIAL)
    r_inactive = rs in (INACTIVE, PARTIAL)
    if rs == RESET:
        no_bytes = not (c[C_SEEN] & (SEEN_D[0] | SEEN_D[1]))
        if os_ in (SYN_SENT, SYN_ACK_SENT) or (os_ == RESET and no_bytes):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os_ == RESET:
        if r_inactive:
            hist = c[C_HIST].lstrip("^")
            if hist.startswith("S") and "R" in hist and not any(ch in hist[: hist.index("R")] for ch in "HAFGIQ"):
                return "RSTOS0"
            return "OTH"
        return "RSTO"
    if rs == CLOSED and os_ == CLOSED:
        return "SF"
    if os_ == CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == CLOSED:
        return "SHR" if o_inactive else "S3"
    if os_ == SYN_SENT and rs == INACTIVE:
        return "S0"
    if os_ == ESTABLISHED and rs == ESTABLISHED:
        return "S1"
    return "OTH"


def teardown_of(c: list) -> tuple[str, str, str, float | None]:
    """(teardown, first_fin_by, first_reset_by, fin_to_rst_seconds) of a connection list."""
    fin0, fin1, rst0, rst1 = c[C_FIN0], c[C_FIN1], c[C_RST0], c[C_RST1]
    first_fin = _first_side(fin0, fin1)
    first_rst = _first_side(rst0, rst1)
    fin_by = ("originator", "responder")[first_fin] if first_fin is not None else "none"
    rst_by = ("originator", "responder")[first_rst] if first_rst is not None else "none"
    fin_to_rst: float | None = None
    if first_rst is not None:
        rst_frame = (rst0, rst1)[first_rst]
        fin_before = first_fin is not None and (fin0, fin1)[first_fin] < rst_frame
        if fin_before and first_fin is not None:  # (fin_before says it; mypy does not narrow through it)
            fin_to_rst = max(0.0, (c[C_RTS0], c[C_RTS1])[first_rst] - (c[C_FTS0], c[C_FTS1])[first_fin])
            own_fin = (fin0, fin1)[first_rst]
            label = "reset-after-own-fin" if own_fin and own_fin < rst_frame else "dirty-close"
        elif first_rst == 1 and c[C_SYNS] and not c[C_SYNACK]:
            label = "refused"
        else:
            label = "reset"
    elif first_fin is not None:
        label = "graceful" if fin0 and fin1 else "half-closed"
    elif c[C_SYNS] and not c[C_SYNACK] and c[C_PK1] == 0:
        label = "unanswered"
    else:
        label = "open"
    return label, fin_by, rst_by, fin_to_rst


def ending_of(c: list) -> tuple[str, str, str]:
    """(teardown, first_fin_by, first_reset_by) of a connection list: `teardown_of` without the
    FIN-to-RST time, in fewer steps (it runs once per connection)."""
    fin0, fin1, rst0, rst1 = c[C_FIN0], c[C_FIN1], c[C_RST0], c[C_RST1]
    if fin0 and (not fin1 or fin0 < fin1):
        fin_by, fin = "originator", fin0
    elif fin1:
        fin_by, fin = "responder", fin1
    else:
        fin_by, fin = "none", 0
    if rst0 and (not rst1 or rst0 < rst1):
        if fin and fin < rst0:
            return ("reset-after-own-fin" if fin0 and fin0 < rst0 else "dirty-close"), fin_by, "originator"
        return "reset", fin_by, "originator"
    if rst1:
        if fin and fin < rst1:
            return ("reset-after-own-fin" if fin1 and fin1 < rst1 else "dirty-close"), fin_by, "responder"
        if c[C_SYNS] and not c[C_SYNACK]:
            return "refused", fin_by, "responder"
        return "reset", fin_by, "responder"
    if fin:
        return ("graceful" if fin0 and fin1 else "half-closed"), fin_by, "none"
    if c[C_SYNS] and not c[C_SYNACK] and c[C_PK1] == 0:
        return "unanswered", fin_by, "none"
    return "open", fin_by, "none"


def _first_side(f0: int, f1: int) -> int | None:
    if f0 and (not f1 or f0 < f1):
        return 0
    if f1:
        return 1
    return None


def build_connection(c: list, source: str) -> Connection:
    label, fin_by, rst_by, fin_to_rst = teardown_of(c)
    orig, resp, orig_ip, resp_ip, resp_port = endpoints_of(c[C_KEY])
    return Connection(
        source=source,
        originator=orig,
        responder=resp,
        orig_ip=orig_ip,
        resp_ip=resp_ip,
        resp_port=resp_port,
        conn_state=conn_state(c),
        history=c[C_HIST],
        teardown=label,
        first_fin_by=fin_by,
        first_reset_by=rst_by,
        fin_to_rst_seconds=round(fin_to_rst, 6) if fin_to_rst is not None else None,
        rst_zero_window=c[C_RZW],
        first_frame=c[C_FIRST],
        last_frame=c[C_LAST],
        fin_frame=min(f for f in (c[C_FIN0], c[C_FIN1]) if f) if c[C_FIN0] or c[C_FIN1] else None,
        rst_frame=min(f for f in (c[C_RST0], c[C_RST1]) if f) if c[C_RST0] or c[C_RST1] else None,
        packets_orig=c[C_PK0],
        packets_resp=c[C_PK1],
        bad_checksums=c[C_CSUM],
        first_time=c[C_T0],
        last_time=c[C_TL],
        **loss_of(c),
    )


def loss_of(c: list) -> dict[str, Any]:
    """The loss figures of a connection list (`Connection`'s fields of the same names)."""
    log = c[C_LOG]
    analysed = type(c[C_KEY]) is bytes  # (a NetMon text export shows most data frames not as TCP: ignored)
    if not log or not analysed:
        return {
            "loss_analysed": analysed,
            "retransmissions": 0,
            "keepalives": 0,
            "gaps": 0,
            "missed_bytes": 0,
            "first_loss_frame": None,
        }
    g = log.get
    keepalives = g("k0", 0) + g("k1", 0)
    return {
        "loss_analysed": analysed,
        "retransmissions": g("t0", 0) + g("t1", 0) - keepalives,
        "keepalives": keepalives,
        "gaps": g("g0", 0) + g("g1", 0),
        "missed_bytes": g("m0", 0) + g("m1", 0),
        "first_loss_frame": g("l"),
    }
