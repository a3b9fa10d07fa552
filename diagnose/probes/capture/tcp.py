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
letters s h a d f r c w i q ^, upper case from the originator. Not implemented: `t` (retransmitted
payload), `g` (content gap) and `x`, which need sequence-space reassembly.
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
CONTROL = FIN | SYN | RST

# The teardown labels, in the order reports show them.
TEARDOWNS = ("graceful", "dirty-close", "reset-after-own-fin", "reset", "refused", "unanswered",
             "half-closed", "open")

# Ports whose side is the server when no SYN was captured (as in the corpus oracle), plus < 1024.
WELL_KNOWN = frozenset({21, 22, 23, 25, 53, 80, 110, 139, 143, 443, 445, 993, 995, 1433, 3128, 3389,
                        8080, 8443})

LINGER = 30.0  # seconds a closed connection is kept for late packets (Zeek: tcp_close_delay 5 s)
SWEEP_EVERY = 1 << 14  # frames between sweeps of closed connections (and releases of read pages)

# Zeek endpoint states
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)

# indices of the per-connection list; the last eight slots (from C_SEQ) hold the sequence numbers of
# the last SYN-ACK (C_SEQ + d), SYN (+ 2 + d), FIN (+ 4 + d) and RST (+ 6 + d) of each direction d,
# which tell a retransmission (same letter once) from a new instance (the letter again)
(C_FIRST, C_LAST, C_PK0, C_PK1, C_SEEN, C_HIST, C_T0, C_TL, C_ST0, C_ST1, C_FIN0, C_FIN1, C_FTS0, C_FTS1,
 C_RST0, C_RST1, C_RTS0, C_RTS1, C_RZW, C_KEY, C_CSUM, C_LOG, C_SRC, C_CLOSED, C_DONE, C_SYNS, C_SYNACK,
 C_RKEY, C_ORDER, C_SEQ) = range(30)
_WIDTH = C_SEQ + 8

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


@dataclass(frozen=True, slots=True)
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

    @property
    def subject(self) -> str:
        return f"{self.originator}>{self.responder}"

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
        src, dst, sport, dport, _conv = key.split("|")
        return f"{src}:{sport}", f"{dst}:{dport}", src, dst, int(dport)
    n = (len(key) - 4) // 2
    src, dst = _ip_text(key[:n]), _ip_text(key[n:2 * n])
    sport = (key[2 * n] << 8) | key[2 * n + 1]
    dport = (key[2 * n + 2] << 8) | key[2 * n + 3]
    if n == 16:
        return f"[{src}]:{sport}", f"[{dst}]:{dport}", src, dst, dport
    return f"{src}:{sport}", f"{dst}:{dport}", src, dst, dport


def reverse_key(key: bytes) -> bytes:
    n = (len(key) - 4) // 2
    return key[n:2 * n] + key[:n] + key[2 * n + 2:2 * n + 4] + key[2 * n:2 * n + 2]


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

    def start_source(self, name: str) -> None:
        self.sources.append(name)
        self.source_index = len(self.sources) - 1

    # -- the general entry point: one TCP segment ---------------------------------------------
    def packet(self, frame: int, ts: float, key: bytes | str, rkey: bytes | str | None, flags: int, win: int,
               plen: int, seq: int, bad: bool) -> None:
        ent = self.conns.get(key)
        if ent is None:
            if self.jobs > 1 and owner_of(key, self.jobs) != self.index:
                return  # another worker's connection
            if flags & 0x17 == SYN and not bad:
                self.open_syn(frame, ts, key, rkey, seq)
                return
            c, d = self._new(frame, ts, key, rkey, flags)
        else:
            c, d = ent
            if flags & 0x12 == SYN and c[C_CLOSED] is not None and seq != c[C_SEQ + 2 + d]:
                # a new SYN on a connection that has ended: port reuse, a new connection
                self._finish(c, (self.source_index, frame, 0, 0.0, 0))
                if flags & 0x17 == SYN and not bad:
                    self.open_syn(frame, ts, key, rkey, seq)
                    return
                c, d = self._new(frame, ts, key, rkey, flags)
        if bad:
            self.bad_checksums += 1
            c[C_CSUM] += 1
            self._log_letter(c, d, "c")
        if flags & CONTROL:
            self.control(c, d, frame, ts, flags, win, plen, seq)
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
        return

    def control(self, c: list, d: int, frame: int, ts: float, flags: int, win: int, plen: int, seq: int) -> None:
        """A segment with SYN, FIN or RST in direction `d` of connection `c`: from `packet` (which
        has found the connection, handled port reuse and counted a bad checksum), or straight from the
        fused pcap loop for a known connection, a good checksum and anything but a SYN without ACK."""
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
            if c[C_SEQ + 4 + d] != seq:
                c[C_SEQ + 4 + d] = seq
                c[C_HIST] += "f" if d else "F"
            if not c[C_FIN0 + d]:
                c[C_FIN0 + d] = frame
                c[C_FTS0 + d] = ts
            if c[st] != RESET:
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

    def open_syn(self, frame: int, ts: float, key: bytes | str, rkey: bytes | str | None, seq: int) -> None:
        """A SYN without ACK, FIN or RST (and a good checksum) that starts a connection: the state
        `_new` and `packet` would make of it, built at once."""
        if rkey is None:
            if isinstance(key, bytes) and len(key) == 12:  # IPv4
                rkey = key[4:8] + key[:4] + key[10:12] + key[8:10]
            else:
                rkey = reverse_key(key) if isinstance(key, bytes) else _reverse_text_key(key)
        c = [frame, frame, 1, 0, 0, "S", ts, ts, SYN_SENT, INACTIVE, 0, 0, None, None, 0, 0, None, None, None, key,
             0, None, self.source_index, None, False, True, False, rkey, None,
             None, None, seq, None, None, None, None, None]
        conns = self.conns
        conns[key] = (c, 0)
        conns[rkey] = (c, 1)

    def _new(self, frame: int, ts: float, key: bytes | str, rkey: bytes | str | None,
             flags: int) -> tuple[list, int]:
        if rkey is None:
            rkey = reverse_key(key) if isinstance(key, bytes) else _reverse_text_key(key)
        d = 0
        if flags & 0x12 == 0x12:
            d = 1
        elif not flags & SYN:
            sport, dport = _ports(key)
            if _server_like(sport) and not _server_like(dport):
                d = 1
        c = [frame, frame, 0, 0, 0, "^" if d else "", ts, ts, INACTIVE, INACTIVE, 0, 0, None, None, 0, 0, None,
             None, None, rkey if d else key, 0, None, self.source_index, None, False, False, False,
             key if d else rkey, None, None, None, None, None, None, None, None, None]
        ent = (c, d)
        self.conns[key] = ent
        self.conns[rkey] = (c, 1 - d)
        return ent

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

    def _log_letter(self, c: list, d: int, letter: str) -> None:
        """c, w: logarithmic letters (1st, 10th, 100th ... instance)."""
        if c[C_LOG] is None:
            c[C_LOG] = {}
        name = letter + str(d)
        n = c[C_LOG].get(name, 0) + 1
        c[C_LOG][name] = n
        while n % 10 == 0:
            n //= 10
        if n == 1:
            c[C_HIST] += letter if d else letter.upper()

    # -- finishing -------------------------------------------------------------------------------
    def sweep(self, now: float, after: int = 0) -> None:
        """Finalise every connection closed more than LINGER seconds before `now`, in the order of
        (close time, closing frame); `after` is the last frame read before this sweep."""
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
            if hist.startswith("S") and "R" in hist and not any(ch in hist[:hist.index("R")] for ch in "HAFGIQ"):
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
        if fin_before:
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
        source=source, originator=orig, responder=resp, orig_ip=orig_ip, resp_ip=resp_ip,
        resp_port=resp_port, conn_state=conn_state(c), history=c[C_HIST], teardown=label,
        first_fin_by=fin_by, first_reset_by=rst_by,
        fin_to_rst_seconds=round(fin_to_rst, 6) if fin_to_rst is not None else None,
        rst_zero_window=c[C_RZW], first_frame=c[C_FIRST], last_frame=c[C_LAST],
        fin_frame=min(f for f in (c[C_FIN0], c[C_FIN1]) if f) if c[C_FIN0] or c[C_FIN1] else None,
        rst_frame=min(f for f in (c[C_RST0], c[C_RST1]) if f) if c[C_RST0] or c[C_RST1] else None,
        packets_orig=c[C_PK0], packets_resp=c[C_PK1], bad_checksums=c[C_CSUM],
        first_time=c[C_T0], last_time=c[C_TL])
