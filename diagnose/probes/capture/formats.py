"""Capture file readers of our own (mmap + struct): pcap, pcapng, NetMon .cap, NetMon text, gzip'd.

Every reader walks its file, hands each TCP segment to a `Tracker` and returns a `ReadResult`. A file
that ends early or is corrupt keeps every frame read before the damage: the result says where
reading stopped (`stopped_at`, a byte offset; for gzip'd input an offset into the decompressed
stream) and why. Nothing here raises on bad content except `InputError` for a file that is not a
capture at all.

Formats (see `knowledge/capture-formats.md` for the sources):
* pcap: magic a1b2c3d4 (microseconds) / a1b23c4d (nanoseconds), either byte order; 16-byte records.
* pcapng: SHB (byte-order magic per section), IDB (link type, if_tsresol, if_tsoffset), EPB, SPB and
  the obsolete PB; other blocks are skipped; interface ids are per section.
* NetMon 2.0-2.3 (`GMBU`) and 1.x (`RTSS`): frames through the frame table; the trailer after each
  frame is sized by the gap to the next frame; metadata frames (0xFFFB-0xFFFF) are skipped; 0xFFE0
  NetEvent frames carrying NDIS-PacketCapture packets are unwrapped; media 0 and 1 are Ethernet,
  0xE000|linktype a pcap link type, 7/8/9 raw IP. Frame numbers are NetMon's (frame-table index + 1).
  When the frame table is missing (a truncated file), frames are walked sequentially from byte 128.

The optional C accelerator `_fastcap` (diagnose/probes/capture/_fastcap.c, built by hatch_build.py)
walks pcap records and pcapng packet blocks for the readers below: it decodes Ethernet (802.1Q, QinQ,
PPPoE), Linux SLL/SLL2 and raw IP frames down to IPv4/IPv6 TCP itself, updates the state of known
connections in place where the Python loops do (counters, first letters, the sequence space in its
common cases) and calls the tracker for the rest, hands other frames to the
Python `feed`, and stops before the first record or block it does not read whole (a damaged one, a
section or interface header), from which the Python loop goes on. The Python loops are the reference
(tests/probes/capture/test_accel.py compares the two); DIAGNOSE_PURE_PYTHON=1 forces them.
"""

from __future__ import annotations

import calendar
import mmap
import os
import struct
import tempfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Callable, cast

from diagnose.bounds import MAX_INFLATE_RATIO, inflate_limit, open_regular
from diagnose.errors import InputError, where
from diagnose.probes.capture import linklayer
from diagnose.probes.capture.tcp import C_HI, C_NXT, ESTABLISHED, HALF, M32, SWEEP_EVERY, Tracker

try:  # the optional C accelerator (built by hatch_build.py); the pure-Python readers are the reference
    import diagnose.probes.capture._fastcap as _fastcap
except ImportError:  # pragma: no cover - depends on the build
    _fastcap = None
if os.environ.get("DIAGNOSE_PURE_PYTHON"):  # for comparing the two paths (tests, bench/capture.py)
    _fastcap = None

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
NETMON2, NETMON1 = b"GMBU", b"RTSS"
GZIP_MAGIC = b"\x1f\x8b"

NDIS_PROVIDER = bytes.fromhex("6e00d62e29470946b4233ee7bcd678ef")  # {2ED6006E-4729-4609-B423-3EE7BCD678EF}
PKTMON_PROVIDER = bytes.fromhex("d9804f4dbdc8734dbb5b19c90402c5ac")  # {4D4F80D9-C8BD-4D73-BB5B-19C90402C5AC}
FILETIME_EPOCH = 11644473600  # seconds from 1601-01-01 to 1970-01-01


@dataclass
class ReadResult:
    source: str
    format: str = ""
    frames: int = 0
    tcp_frames: int = 0
    stopped_at: int | None = None  # byte offset where reading stopped early (partial)
    reason: str = ""
    skipped: Counter = field(default_factory=Counter)  # why frames were not decoded
    compressed: bool = False

    @property
    def partial(self) -> bool:
        return self.stopped_at is not None

    def stop(self, offset: int, reason: str) -> None:
        if self.stopped_at is None:
            self.stopped_at = offset
            self.reason = reason


@dataclass(frozen=True)
class Inflated:
    """A gzip'd capture decompressed once (`inflate`) for every worker: where the data is, and where
    and why decompression stopped early (None: the whole stream was read)."""

    data_path: str
    stopped_at: int | None = None
    reason: str = ""


class _Buffer:
    """A read-only view of a (possibly decompressed) capture: mmap when possible."""

    def __init__(self, path: Path, result: ReadResult, inflated: Inflated | None = None) -> None:
        self._file = open_regular(inflated.data_path if inflated is not None else path)
        self._tmp = None
        self.data: mmap.mmap | bytes = b""
        src: IO[bytes] = self._file
        if inflated is not None:
            result.compressed = True
            if inflated.stopped_at is not None:
                result.stop(inflated.stopped_at, inflated.reason)
        else:
            head = self._file.read(2)
            self._file.seek(0)
            if head == GZIP_MAGIC:
                result.compressed = True
                self._tmp = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
                _gunzip(self._file, self._tmp, result)
                self._tmp.flush()
                src = self._tmp
        size = os.fstat(src.fileno()).st_size
        if size:
            self.data = mmap.mmap(src.fileno(), 0, access=mmap.ACCESS_READ)

    def close(self) -> None:
        if isinstance(self.data, mmap.mmap):
            self.data.close()
        if self._tmp is not None:
            self._tmp.close()
        self._file.close()


def inflate(path: Path, folder: str) -> Inflated | None:
    """A gzip'd capture decompressed once into `folder` (bounded: `diagnose.bounds.inflate_limit`),
    for workers that read it side by side; None when the file is not gzip'd."""
    with open_regular(path) as src:
        if src.read(2) != GZIP_MAGIC:
            return None
        src.seek(0)
        result = ReadResult(str(path))
        fd, name = tempfile.mkstemp(prefix="capture-", suffix=".raw", dir=folder)
        with os.fdopen(fd, "wb") as dst:
            _gunzip(src, dst, result)
    return Inflated(name, result.stopped_at, result.reason)


def _gunzip(src: IO[bytes], dst: IO[bytes], result: ReadResult, limit: int | None = None) -> None:
    """Decompress every gzip member, streamed (no piece larger than a megabyte in memory) and
    bounded (`limit`, else `bounds.inflate_limit` of the compressed size); on damage keep what was
    decompressed before it, and say where it stopped."""
    compressed = os.fstat(src.fileno()).st_size
    cap = limit if limit is not None else inflate_limit(compressed)
    piece = 1 << 20
    done = consumed = 0
    z = zlib.decompressobj(wbits=31)
    try:
        while chunk := src.read(piece):
            consumed += len(chunk)
            while chunk:
                before = z.copy()  # to go back to when this piece is damaged (see _salvage)
                try:
                    out = z.decompress(chunk, piece)
                except zlib.error:
                    done += _salvage(before, chunk, dst, cap - done)
                    raise
                if done + len(out) > cap:
                    dst.write(out[: cap - done])
                    done = cap
                    result.stop(
                        done,
                        f"gzip stream decompresses to more than {cap:,} bytes from {compressed:,} "
                        f"(bound: {MAX_INFLATE_RATIO}x); the first {cap:,} bytes were read",
                    )
                    return
                dst.write(out)
                done += len(out)
                if z.unconsumed_tail:
                    chunk = z.unconsumed_tail
                elif z.eof:
                    chunk = z.unused_data
                    if chunk.strip(b"\0"):
                        z = zlib.decompressobj(wbits=31)
                    else:
                        chunk = b""
                else:
                    chunk = b""
        tail = z.flush()
        dst.write(tail[: max(0, cap - done)])
        done += len(tail[: max(0, cap - done)])
        if not z.eof:
            result.stop(
                done, f"gzip stream ends early (compressed file cut at byte {consumed}); {done} bytes decompressed"
            )
    except zlib.error as exc:
        result.stop(done, f"gzip stream damaged near compressed byte {consumed} ({exc}); {done} bytes decompressed")


def _salvage(z, chunk: bytes, dst: IO[bytes], room: int) -> int:
    """What a damaged piece still holds before the damage: zlib hands out nothing from a call that
    fails, so the piece is fed again in slices of 4 KiB, and the slice that fails byte by byte.
    Returns the bytes written."""
    written = 0

    def feed(d, data: bytes) -> None:
        nonlocal written
        pieces = []  # written once the whole slice went through (a slice that fails is fed again)
        got = 0
        while data and written + got < room:
            out = d.decompress(data, 1 << 16)
            pieces.append(out)
            got += len(out)
            data = d.unconsumed_tail
        out = b"".join(pieces)[: room - written]
        dst.write(out)
        written += len(out)

    for step in (4096, 1):
        failed = None
        for at in range(0, len(chunk), step):
            before = z.copy()
            try:
                feed(z, chunk[at : at + step])
            except zlib.error:
                failed = chunk[at : at + step]
                z = before
                break
            if z.eof or written >= room:
                return written
        if failed is None:
            return written
        chunk = failed
    return written


def read_capture(path: Path, tracker: Tracker, inflated: Inflated | None = None) -> ReadResult:
    """Read one capture file of any supported format into `tracker` (`inflated`: the gzip'd file
    already decompressed, see `inflate`)."""
    result = ReadResult(str(path))
    try:
        buf = _Buffer(path, result, inflated)
    except OSError as exc:
        raise InputError(f"cannot read capture: {exc.strerror or exc}", str(path)) from None
    try:
        data = buf.data
        gz_stop, gz_reason = result.stopped_at, result.reason
        result.stopped_at, result.reason = None, ""
        tracker.start_source(path.name)
        head = bytes(data[:4])
        if head in PCAP_MAGICS:
            result.format = "pcap"
            _read_pcap(data, result, tracker)
        elif head == PCAPNG_MAGIC:
            result.format = "pcapng"
            _read_pcapng(data, result, tracker)
        elif head in (NETMON2, NETMON1):
            _read_netmon(data, result, tracker)
        else:
            from diagnose.probes.capture.netmon_text import read_text

            if not read_text(data, result, tracker):
                shown = head.hex() if head else "empty file"
                raise InputError(
                    f"not a capture: no pcap, pcapng, NetMon or NetMon text content ({shown})", where(path, offset=0)
                )
        if gz_stop is not None:
            # the compressed stream broke: that is where reading stopped, whatever the inner reader saw
            inner = f"; {result.reason}" if result.reason else ""
            result.stopped_at, result.reason = gz_stop, gz_reason + inner
        return result
    finally:
        buf.close()


# -- shared per-frame path ------------------------------------------------------------------------
_IP4TCP = struct.Struct("!BxH2xHxB10x4xIIBBH")  # vihl total frag proto | tcp seq ack off flags win
_SEQ = struct.Struct("!I")
_SEQ_ACK = struct.Struct("!II")
PAGE = mmap.PAGESIZE


class _Releaser:
    """Drops already-read pages of a mapped file from this process's resident set (they stay in the
    page cache), so resident memory does not grow with the size of the capture."""

    def __init__(self, data) -> None:
        self.data = data if isinstance(data, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED") else None
        self.done = 0

    def __call__(self, upto: int) -> None:
        if self.data is None:
            return
        upto = upto - upto % PAGE
        if upto > self.done:
            self.data.madvise(mmap.MADV_DONTNEED, self.done, upto - self.done)
            self.done = upto


def _feeder(data, tracker: Tracker):
    """`feed(lt, p, incl, frame, ts) -> bool`: one frame into the tracker; False when it is not TCP.

    Plain IPv4 (no options, not a fragment) after any link layer takes an inlined path in which a
    segment of a known connection without SYN/FIN/RST only bumps counters; everything else (IPv6,
    IP options, fragments) goes through `linklayer.decode_tcp`.
    """
    conns, packet, first, log = tracker.conns, tracker.packet, tracker._first, tracker._log_letter
    sequence = tracker.sequence
    ip4 = _IP4TCP.unpack_from
    ip_offset, decode = linklayer.ip_offset, linklayer.decode_tcp
    jobs, index = tracker.jobs, tracker.index

    def feed(lt: int, p: int, incl: int, frame: int, ts: float) -> bool:
        end = p + incl
        if lt == 1 and incl >= 54 and data[p + 12] == 8 and data[p + 13] == 0:
            ip, version = p + 14, 4
        else:
            ip, version = ip_offset(lt, data, p, end)
        if version == 4 and ip + 40 <= end:
            vihl, tl, frag, proto, seq, ack, doff, fl, win = ip4(data, ip)
            if vihl == 0x45 and proto == 6 and not frag & 0x1FFF:
                if jobs > 1 and (data[ip + 21] ^ data[ip + 23]) % jobs != index:
                    return True  # another worker's connection (tcp.owner_of)
                key = data[ip + 12 : ip + 24]
                plen = tl - 20 - ((doff >> 4) << 2)
                if plen < 0:
                    plen = 0
                if fl & 0x17 == 0x10:  # ACK, no SYN/FIN/RST
                    ent = conns.get(key)
                    if ent is not None:
                        c, d = ent
                        c[1] = frame
                        c[2 + d] += 1
                        m = 5 << d
                        if c[4] & m != m:
                            if plen > 0:
                                if not c[4] & (4 << d):
                                    first(c, d, "d", 4 << d)
                            elif not c[4] & (1 << d):
                                first(c, d, "a", 1 << d)
                        if win == 0:
                            log(c, d, "w")
                        # the sequence numbers (tcp.Tracker.sequence): in place when the segment goes on
                        # where its direction is and its ACK reveals no gap, else the tracker's way
                        if (
                            c[C_HI + d] == seq
                            and c[C_NXT + d] == seq
                            and (c[C_HI + 1 - d] is None or not 0 < (ack - c[C_NXT + 1 - d]) & M32 < HALF)
                        ):
                            if plen:
                                c[C_HI + d] = c[C_NXT + d] = (seq + plen) & M32
                        else:
                            sequence(c, d, fl, seq, plen, ack)
                        return True
                bad = False
                if fl & 0x05 and ip + tl <= end:
                    # ones-complement sum = value mod 0xFFFF (odd length: pad one zero byte = * 256)
                    v = int.from_bytes(data[ip + 20 : ip + tl], "big") << (8 * (tl & 1))
                    bad = (int.from_bytes(data[ip + 12 : ip + 20], "big") + tl - 14 + v) % 0xFFFF != 0
                packet(frame, ts, key, None, fl, win, plen, seq, ack, bad)
                return True
        seg = decode(lt, data, p, incl)
        if seg is None:
            return False
        packet(frame, ts, *seg)
        return True

    return feed


def _handlers(tracker: Tracker, feed, release: _Releaser) -> tuple:
    """What the C accelerator calls back (see _fastcap.c): the tracker's table and entry points, the
    Python feeder for the frames it leaves to Python, the page releaser, and the worker's share."""
    return (
        tracker.conns,
        tracker.open_syn,
        tracker.control,
        tracker.control_flags,
        tracker.packet,
        tracker._log_letter,
        tracker.sequence,
        tracker.sweep,
        release,
        feed,
        tracker.jobs,
        tracker.index,
    )


def _accelerated_pcap(
    data, tracker: Tracker, feed, release: _Releaser, lt: int, order: str, scale: float, sweep_before: bool
) -> tuple[int, int, int]:
    """(offset, frames, TCP frames) after the records the C accelerator read (none without it): every
    whole record; the Python loop goes on from there (a record cut short, the end)."""
    if _fastcap is None:
        return 24, 0, 0
    return _fastcap.pcap(data, 24, 0, lt, order == ">", scale, sweep_before, _handlers(tracker, feed, release))


# -- pcap -----------------------------------------------------------------------------------------
def _read_pcap(data, result: ReadResult, tracker: Tracker) -> None:
    end = len(data)
    if end < 24:
        result.stop(0, "pcap file header incomplete")
        return
    order, scale = PCAP_MAGICS[bytes(data[:4])]
    lt = struct.unpack_from(order + "I", data, 20)[0] & 0xFFFF
    result.format = f"pcap ({'ns' if scale == 1e-9 else 'us'}, {'big' if order == '>' else 'little'}-endian)"
    if lt not in linklayer.SUPPORTED:
        result.skipped[f"link type {lt}"] += 1
    if lt == linklayer.ETHERNET and order == "<":
        _pcap_fast_ethernet(data, result, tracker, scale)
        return
    hdr = struct.Struct(order + "IIII").unpack_from
    feed = _feeder(data, tracker)
    release = _Releaser(data)
    off, frame, tcp = _accelerated_pcap(data, tracker, feed, release, lt, order, scale, False)
    mask = SWEEP_EVERY - 1
    while off < end:
        if off + 16 > end:
            result.stop(off, "record header cut short")
            break
        ts_s, ts_f, incl, _orig = hdr(data, off)
        p = off + 16
        if p + incl > end:
            result.stop(off, f"frame {frame + 1} cut short ({incl} bytes announced, {end - p} left)")
            break
        frame += 1
        off = p + incl
        ts = ts_s + ts_f * scale
        if feed(lt, p, incl, frame, ts):
            tcp += 1
        if not frame & mask:
            tracker.sweep(ts, frame)
            release(off)
    result.frames += frame
    result.tcp_frames += tcp
    tracker.tcp_packets += tcp


# pcap record header (little-endian) fused with the Ethernet + IPv4 + TCP fields the common case
# needs, in one struct call; all but the first are small ints (no allocation: building the values is
# most of the cost of a frame that is only skipped):
# * captured length (record bytes 8-11);
# * frame bytes 12-13 (ethertype, little-endian: IPv4 reads 8) and 14 (version/IHL: plain IPv4 0x45);
# * frame bytes 20-21 (flags/fragment offset, little-endian: not a later fragment is `& 0xFF1F == 0`)
#   and 23 (protocol: TCP 6);
# * frame bytes 35 and 37, the low bytes of the TCP source and destination ports (which worker owns
#   the connection in a split run: `tcp.owner_of`);
# * frame byte 47 (TCP flags) and 48-49 (window, little-endian: only its being zero is used as is).
_FUSED = struct.Struct("<8xI16xHB5xHxB11xBxB9xBH")
_FIRSTS = (5, 10)  # SEEN_A | SEEN_D of each direction (tcp.SEEN_*)
_LETTER_A, _LETTER_D = ("A", "a"), ("D", "d")
_TS = struct.Struct("<II")


def _pcap_fast_ethernet(data, result: ReadResult, tracker: Tracker, scale: float) -> None:
    """Little-endian pcap + Ethernet: one struct call per frame for the plain IPv4/TCP case.

    A segment of a known connection without SYN/FIN/RST is handled here (counters, and a direction's
    first pure ACK or data letter); a SYN that opens a connection goes to `Tracker.open_syn`, a SYN-ACK,
    FIN or RST of a known connection with a good checksum to `Tracker.control`, any other TCP segment
    (new connections otherwise, bad checksums, SYNs of known connections) to `Tracker.packet`, zero
    windows to the tracker's letter log, and anything other than plain Ethernet/IPv4/TCP to the
    general path. A worker of a split run
    (`tracker.jobs` > 1) drops the segments of connections it does not own right here: the low bytes
    of the two ports (frame bytes 35 and 37) XORed, modulo the number of workers (`tcp.owner_of`).
    """
    end = len(data)
    limit = end - _FUSED.size
    hdr = struct.Struct("<IIII").unpack_from
    fused = _FUSED.unpack_from
    tsof = _TS.unpack_from
    get, packet, active, log = tracker.conns.get, tracker.packet, tracker._active, tracker._log_letter
    open_syn, control, sequence = tracker.open_syn, tracker.control, tracker.sequence
    seqof = _SEQ.unpack_from
    seqack = cast("Callable[..., tuple[int, int]]", _SEQ_ACK.unpack_from)  # (seq, ack): struct says tuple[Any, ...]
    hi0, nxt0, nxt1, half, m32 = C_HI, C_NXT, C_NXT + 1, HALF, M32
    feed = _feeder(data, tracker)
    release = _Releaser(data)
    off, frame, tcp = _accelerated_pcap(data, tracker, feed, release, linklayer.ETHERNET, "<", scale, True)
    other = frame - tcp
    mask = SWEEP_EVERY - 1
    jobs, index = tracker.jobs, tracker.index
    mine = tuple(x % jobs == index for x in range(256))  # by sport ^ dport low bytes (tcp.owner_of)
    firsts, letter_a, letter_d, established = _FIRSTS, _LETTER_A, _LETTER_D, ESTABLISHED
    while off < end:
        while off <= limit:  # the fused struct fits: every record but those in the last bytes
            incl, etype, vihl, frag, proto, sport, dport, fl, win = fused(data, off)
            off += 16 + incl
            if off > end:
                off -= 16 + incl
                break  # cut short: reported below
            frame += 1
            if not frame & mask:
                ts_s, ts_f = tsof(data, off - incl - 16)
                tracker.sweep(ts_s + ts_f * scale, frame - 1)  # before this frame is read
                release(off)
            p = off - incl  # the frame
            if etype == 8 and vihl == 0x45 and proto == 6 and not frag & 0xFF1F and incl >= 54:
                if not mine[sport ^ dport]:
                    continue  # another worker's connection
                if fl & 0x17 == 0x10:  # ACK, no SYN/FIN/RST
                    ent = get(data[p + 26 : p + 38])
                    if ent is not None:
                        c, d = ent
                        c[1] = frame  # C_LAST
                        c[2 + d] += 1  # C_PK0 + d
                        plen = ((data[p + 16] << 8) | data[p + 17]) - 20 - ((data[p + 46] & 0xF0) >> 2)
                        seen = c[4]  # C_SEEN
                        if seen & firsts[d] != firsts[d]:  # this direction's first data or pure ACK?
                            if plen > 0:
                                bit = 4 << d  # SEEN_D
                                if not seen & bit:
                                    c[4] = seen | bit
                                    c[5] += letter_d[d]  # C_HIST
                                    if c[8 + d] < established:  # C_ST0 + d
                                        active(c, d)
                            elif not seen & (1 << d):  # SEEN_A
                                c[4] = seen | (1 << d)
                                c[5] += letter_a[d]
                                if c[8 + d] < established:
                                    active(c, d)
                        if not win:
                            log(c, d, "w")
                        # the sequence numbers, as _feeder does them
                        seq, ack = seqack(data, p + 38)
                        if c[hi0 + d] == seq == c[nxt0 + d] and (
                            (peer := c[nxt1 - d]) == ack or peer is None or not 0 < (ack - peer) & m32 < half
                        ):
                            if plen > 0:
                                c[hi0 + d] = c[nxt0 + d] = (seq + plen) & m32
                        else:
                            sequence(c, d, fl, seq, plen if plen > 0 else 0, ack)
                        continue
                tl = (data[p + 16] << 8) | data[p + 17]
                plen = tl - 20 - ((data[p + 46] & 0xF0) >> 2)
                if plen < 0:
                    plen = 0
                if fl & 0x17 == 0x02:  # SYN without ACK/FIN/RST (no checksum check): a new connection?
                    key = data[p + 26 : p + 38]
                    if get(key) is None:
                        ts_s, ts_f = tsof(data, p - 16)
                        open_syn(frame, ts_s + ts_f * scale, key, None, seqof(data, p + 38)[0], plen)
                        continue
                bad = False
                if fl & 0x05 and 14 + tl <= incl:  # FIN/RST: verify the TCP checksum (see _feeder)
                    if tl >= 20:
                        # addresses and segment in one number: 2**16 is 1 mod 0xFFFF, so its value mod
                        # 0xFFFF is the sum of its 16-bit words; the 8 address bytes keep the alignment
                        v = int.from_bytes(data[p + 26 : p + 14 + tl], "big") << (8 * (tl & 1))
                        bad = (v + tl - 14) % 0xFFFF != 0
                    else:
                        bad = (int.from_bytes(data[p + 26 : p + 34], "big") + tl - 14) % 0xFFFF != 0
                ts_s, ts_f = tsof(data, p - 16)
                key = data[p + 26 : p + 38]
                if fl & 0x07 and not bad and fl & 0x12 != 0x02:  # SYN-ACK, FIN, RST: of a known connection?
                    ent = get(key)
                    if ent is not None:
                        control(
                            ent[0],
                            ent[1],
                            frame,
                            ts_s + ts_f * scale,
                            fl,
                            ((win & 0xFF) << 8) | (win >> 8),
                            plen,
                            *seqack(data, p + 38),
                        )
                        continue
                packet(
                    frame,
                    ts_s + ts_f * scale,
                    key,
                    None,
                    fl,
                    ((win & 0xFF) << 8) | (win >> 8),
                    plen,
                    *seqack(data, p + 38),
                    bad,
                )
                continue
            ts_s, ts_f = tsof(data, p - 16)
            if not feed(1, p, incl, frame, ts_s + ts_f * scale):
                other += 1
        if off >= end:
            break
        # a record starting in the last _FUSED.size bytes (general path), or one cut short
        if off + 16 > end:
            result.stop(off, "record header cut short")
            break
        incl = hdr(data, off)[2]
        p = off + 16
        nxt = p + incl
        if nxt > end:
            result.stop(off, f"frame {frame + 1} cut short ({incl} bytes announced, {end - p} left)")
            break
        frame += 1
        off = nxt
        if not frame & mask:
            ts_s, ts_f = tsof(data, p - 16)
            tracker.sweep(ts_s + ts_f * scale, frame - 1)  # before this frame is read
            release(off)
        ts_s, ts_f = tsof(data, p - 16)
        if not feed(1, p, incl, frame, ts_s + ts_f * scale):
            other += 1
    tracker.tcp_packets += frame - other
    result.frames += frame
    result.tcp_frames += frame - other


# -- pcapng ---------------------------------------------------------------------------------------
def _read_pcapng(data, result: ReadResult, tracker: Tracker) -> None:
    end = len(data)
    off, frame, tcp = 0, 0, 0
    order = "<"
    ifaces: list[tuple[int, float, int]] = []  # link type, seconds per tick, offset seconds
    feed = _feeder(data, tracker)
    release = _Releaser(data)
    u32 = struct.Struct("<I")
    fast = _fastcap.pcapng if _fastcap is not None else None
    handlers = _handlers(tracker, feed, release)
    while off < end:
        if fast is not None:  # packet blocks and skipped ones; it stops before any other block, for Python
            off, frame, n = fast(data, off, frame, order == ">", ifaces, handlers)
            tcp += n
            if off >= end:
                break
        if off + 12 > end:
            result.stop(off, "block header cut short")
            break
        btype = struct.unpack_from(order + "I", data, off)[0]
        if btype == 0x0A0D0D0A:
            bom = bytes(data[off + 8 : off + 12])
            if bom == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                result.stop(off, "section header with an unknown byte-order magic")
                break
            u32 = struct.Struct(order + "I")
            ifaces = []
        blen = u32.unpack_from(data, off + 4)[0]
        if blen < 12 or blen % 4 or off + blen > end:
            result.stop(
                off,
                f"block of type 0x{btype:x} with length {blen} "
                + ("past the end of the file" if off + blen > end else "that is not valid"),
            )
            break
        if u32.unpack_from(data, off + blen - 4)[0] != blen:
            result.stop(off, f"block of type 0x{btype:x}: trailing length differs from {blen}")
            break
        body = off + 8
        if btype == 1:  # IDB
            if blen < 20:
                result.stop(off, "interface description block too short")
                break
            lt = struct.unpack_from(order + "H", data, body)[0]
            ifaces.append(_idb_options(data, body + 8, off + blen - 4, order, lt))
            if lt not in linklayer.SUPPORTED:
                result.skipped[f"link type {lt}"] += 0  # declared; counted per packet below
        elif btype in (6, 2, 3):
            frame += 1
            if btype == 3:  # SPB: interface 0, no timestamp
                iface, ts_raw, incl = 0, 0, min(u32.unpack_from(data, body)[0], blen - 16)
                p = body + 4
            elif btype == 6:
                if blen < 32:
                    result.stop(off, "enhanced packet block too short")
                    break
                iface, hi, lo, incl, _orig = struct.unpack_from(order + "IIIII", data, body)
                ts_raw, p = (hi << 32) | lo, body + 20
            else:
                if blen < 32:
                    result.stop(off, "packet block too short")
                    break
                iface, _drops, hi, lo, incl, _orig = struct.unpack_from(order + "HHIIII", data, body)
                ts_raw, p = (hi << 32) | lo, body + 20
            if p + incl > off + blen - 4 or incl < 0:
                result.stop(off, f"packet {frame}: captured length {incl} exceeds its block")
                break
            if iface >= len(ifaces):
                result.skipped["packet for an undeclared interface"] += 1
            else:
                lt, tick, tsoff = ifaces[iface]
                ts = ts_raw * tick + tsoff
                if feed(lt, p, incl, frame, ts):
                    tcp += 1
                if not frame & (SWEEP_EVERY - 1):
                    tracker.sweep(ts, frame)
                    release(off)
        off += blen
    result.frames += frame
    result.tcp_frames += tcp
    tracker.tcp_packets += tcp


def _idb_options(data, p: int, end: int, order: str, lt: int) -> tuple[int, float, int]:
    tick, tsoff = 1e-6, 0
    opt = struct.Struct(order + "HH")
    while p + 4 <= end:
        code, length = opt.unpack_from(data, p)
        if code == 0:
            break
        v = p + 4
        if code == 9 and length >= 1:
            r = data[v]
            tick = 2.0 ** -(r & 0x7F) if r & 0x80 else 10.0**-r
        elif code == 14 and length >= 8:
            tsoff = struct.unpack_from(order + "q", data, v)[0]
        p = v + ((length + 3) & ~3)
    return lt, tick, tsoff


# -- NetMon .cap ----------------------------------------------------------------------------------
_NM_HDR = struct.Struct("<4sBBH8HIIII")
_NM_FRAME2 = struct.Struct("<qII")
_NM_FRAME1 = struct.Struct("<IHH")
_TRAILER = {0: 0, 1: 2, 2: 6, 3: 15}  # 2.x minor version -> trailer bytes
METADATA_MEDIA = frozenset({0xFFFB, 0xFFFC, 0xFFFD, 0xFFFE, 0xFFFF})


def _media_to_linktype(media: int) -> int | None:
    if media in (0, 1):
        return linklayer.ETHERNET
    if media in (7, 8, 9):
        return linklayer.RAW
    if media & 0xF000 == 0xE000 and not 0xE080 <= media <= 0xE08A:
        return media & 0x0FFF
    return None


def _read_netmon(data, result: ReadResult, tracker: Tracker) -> None:
    end = len(data)
    if end < 128:
        result.format = "netmon"
        result.stop(0, "NetMon file header incomplete")
        return
    magic, minor, major, media, *st, ft_off, ft_len, _ud_off, _ud_len = _NM_HDR.unpack_from(data, 0)
    v1 = magic == NETMON1
    result.format = f"netmon {major}.{minor}"
    base = _systemtime(st)
    offsets: list[int] = []
    if 128 <= ft_off < end and ft_len and ft_off + ft_len > end:
        # the file was cut inside its frame table: the entries that are there are still good
        have = (end - ft_off) // 4
        offsets = list(struct.unpack_from(f"<{have}I", data, ft_off))
        result.stop(ft_off + 4 * have, f"frame table cut short: {have} of {ft_len // 4} entries")
        table_end = ft_off
    elif ft_len == 0 or ft_len % 4 or ft_off + ft_len > end or ft_off < 128:
        reason = (
            f"frame table at {ft_off} (+{ft_len}) is past the end of the file"
            if ft_off + ft_len > end
            else f"frame table at {ft_off} (+{ft_len}) is not valid"
        )
        offsets = _netmon_walk(data, v1, minor, end)
        result.stop(min(ft_off, end), reason + f"; {len(offsets)} frames found by walking the file")
        table_end = end
    else:
        offsets = list(struct.unpack_from(f"<{ft_len // 4}I", data, ft_off))
        table_end = ft_off
    default_trailer = 0 if v1 else _TRAILER.get(minor, 0)
    feed = _feeder(data, tracker)
    frame = tcp = 0
    for i, off in enumerate(offsets):
        number = i + 1
        hlen = 8 if v1 else 16
        if off + hlen > end or off < 16:
            result.stop(off, f"frame {number}: offset {off} is outside the file")
            break
        if v1:
            ms, _orig, incl = _NM_FRAME1.unpack_from(data, off)
            delta = ms / 1000.0
        else:
            us, _orig, incl = _NM_FRAME2.unpack_from(data, off)
            delta = us / 1e6
        p = off + hlen
        if p + incl > end:
            result.stop(off, f"frame {number} cut short ({incl} bytes announced, {end - p} left)")
            break
        data_end = p + incl
        nxt = offsets[i + 1] if i + 1 < len(offsets) else table_end
        gap = nxt - data_end
        trailer = gap if 0 <= gap <= 64 else default_trailer
        if data_end + trailer > end:
            trailer = max(0, end - data_end)
        fmedia = media
        if trailer >= 2:
            fmedia = struct.unpack_from("<H", data, data_end)[0]
        ts = base + delta
        if trailer >= 14:
            ft = struct.unpack_from("<Q", data, data_end + 6)[0]
            if ft:
                ts = (ft - FILETIME_EPOCH * 10_000_000) / 1e7
        frame = number
        if fmedia in METADATA_MEDIA:
            result.skipped["NetMon metadata frame"] += 1
            continue
        lt: int | None
        if fmedia == 0xFFE0:
            inner = _unwrap_netevent(data, p, incl)
            if inner is None:
                result.skipped["NetEvent frame without a whole NDIS packet"] += 1
                continue
            p, incl, lt = inner
        else:
            lt = _media_to_linktype(fmedia)
            if lt is None:
                result.skipped[f"NetMon media type 0x{fmedia:04x}"] += 1
                continue
        if feed(lt, p, incl, number, ts):
            tcp += 1
        if not number & (SWEEP_EVERY - 1):
            tracker.sweep(ts, number)
    result.frames += frame
    result.tcp_frames += tcp
    tracker.tcp_packets += tcp


def _netmon_walk(data, v1: bool, minor: int, end: int) -> list[int]:
    """Frame offsets found by walking records from byte 128 (when the frame table is lost)."""
    offsets, off = [], 128
    hlen = 8 if v1 else 16
    trailer = 0 if v1 else _TRAILER.get(minor, 0)
    while off + hlen <= end:
        incl = _NM_FRAME1.unpack_from(data, off)[2] if v1 else _NM_FRAME2.unpack_from(data, off)[2]
        nxt = off + hlen + incl + trailer
        if nxt > end or incl > 0x40000:
            break
        offsets.append(off)
        off = nxt
    return offsets


def _unwrap_netevent(data, p: int, incl: int) -> tuple[int, int, int] | None:
    """An ETW NetEvent frame: the NDIS-PacketCapture (or PktMon) packet inside, as (offset, length, lt)."""
    if incl < 89:
        return None
    provider = bytes(data[p + 24 : p + 40])
    event_id = struct.unpack_from("<H", data, p + 40)[0]
    keyword = struct.unpack_from("<Q", data, p + 48)[0]
    user_len = struct.unpack_from("<H", data, p + 86)[0]
    u = p + 89
    if u + user_len > p + incl:
        return None
    if provider == NDIS_PROVIDER and event_id == 1001 and user_len >= 12:
        if keyword & 0xC0000000 != 0xC0000000:  # a fragment of a packet, not the whole frame
            return None
        if not keyword & 1:  # 802.11 media: not decoded
            return None
        size = struct.unpack_from("<I", data, u + 8)[0]
        size = min(size, user_len - 12)
        return u + 12, size, linklayer.ETHERNET
    return None


def _systemtime(st: list[int]) -> float:
    """Capture start (local time of the capturing host, no zone) as seconds, read as if UTC."""
    year, month, _dow, day, hour, minute, sec, ms = st
    try:
        start = datetime(year, month, day, hour, minute, sec)
    except (ValueError, OverflowError):
        return 0.0
    return calendar.timegm(start.timetuple()) + (ms / 1000 if ms < 1000 else 0)
