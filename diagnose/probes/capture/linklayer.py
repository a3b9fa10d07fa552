"""Link-layer and IP decoding down to the TCP header: the general (slower, complete) path.

Link types (tcpdump.org LINKTYPE_* values): 0 BSD loopback (host byte order), 1 Ethernet (with
802.1Q/802.1ad/QinQ tags and PPPoE sessions), 9 PPP, 12/101 raw IP, 50 PPP in HDLC framing,
51 PPPoE, 108 OpenBSD loopback (network order), 113 Linux SLL, 228 raw IPv4, 229 raw IPv6,
276 Linux SLL2. IPv4 (options, first fragments only) and IPv6 (hop-by-hop, routing, destination
options, fragment and AH extension headers).
"""

from __future__ import annotations

import struct
import typing

ETHERNET, NULL, PPP, RAW, RAW12, PPP_HDLC, PPP_ETHER, LOOP, LINUX_SLL, RAW4, RAW6, LINUX_SLL2 = (
    1,
    0,
    9,
    101,
    12,
    50,
    51,
    108,
    113,
    228,
    229,
    276,
)
SUPPORTED = frozenset({ETHERNET, NULL, PPP, RAW, RAW12, PPP_HDLC, PPP_ETHER, LOOP, LINUX_SLL, RAW4, RAW6, LINUX_SLL2})

_VLAN = frozenset({0x8100, 0x88A8, 0x9100, 0x9200})
_IPV6_EXT = frozenset({0, 43, 60})
_H = struct.Struct("!H")
_U32L = struct.Struct("<I")
_TCP = struct.Struct("!HHIIBBH")  # sport dport seq ack off flags win
_IPV4 = struct.Struct("!BBHHHBBH")  # vihl tos total id frag ttl proto cksum

# key, rkey, flags, win, plen, seq, ack, bad checksum
Segment = typing.Tuple[bytes, bytes, int, int, int, int, int, bool]


def _ethertype_to_ip(buf, p: int, end: int, etype: int) -> tuple[int, int]:
    """Follow VLAN tags and PPPoE to an IP header: (offset, 4|6) or (-1, 0)."""
    while True:
        if etype == 0x0800:
            return p, 4
        if etype == 0x86DD:
            return p, 6
        if etype in _VLAN:
            if p + 4 > end:
                return -1, 0
            etype = _H.unpack_from(buf, p + 2)[0]
            p += 4
            continue
        if etype == 0x8864:  # PPPoE session: ver/type, code, session id, length, then PPP protocol
            if p + 8 > end:
                return -1, 0
            return _ppp_to_ip(_H.unpack_from(buf, p + 6)[0], p + 8)
        return -1, 0


def _ppp_to_ip(proto: int, p: int) -> tuple[int, int]:
    if proto == 0x0021:
        return p, 4
    if proto == 0x0057:
        return p, 6
    return -1, 0


def ip_offset(lt: int, buf, p: int, end: int) -> tuple[int, int]:
    """Offset of the IP header inside a frame and its version, or (-1, 0)."""
    if lt == ETHERNET:
        if p + 14 > end:
            return -1, 0
        return _ethertype_to_ip(buf, p + 14, end, _H.unpack_from(buf, p + 12)[0])
    if lt in (RAW, RAW12, RAW4, RAW6):
        if p >= end:
            return -1, 0
        v = buf[p] >> 4
        return (p, v) if v in (4, 6) else (-1, 0)
    if lt == LINUX_SLL:
        if p + 16 > end:
            return -1, 0
        return _ethertype_to_ip(buf, p + 16, end, _H.unpack_from(buf, p + 14)[0])
    if lt == LINUX_SLL2:
        if p + 20 > end:
            return -1, 0
        return _ethertype_to_ip(buf, p + 20, end, _H.unpack_from(buf, p)[0])
    if lt in (NULL, LOOP):
        if p + 4 > end:
            return -1, 0
        fam = _U32L.unpack_from(buf, p)[0]
        if lt == LOOP or fam > 0xFFFF:
            fam = int.from_bytes(buf[p : p + 4], "big")
        if fam == 2:
            return p + 4, 4
        if fam in (10, 24, 28, 30):
            return p + 4, 6
        return -1, 0
    if lt in (PPP, PPP_HDLC):
        if p + 2 > end:
            return -1, 0
        if buf[p] == 0xFF and buf[p + 1] == 0x03:
            p += 2
        if p + 2 > end:
            return -1, 0
        if buf[p] & 1:  # protocol field compressed to one byte
            return _ppp_to_ip(buf[p], p + 1)
        return _ppp_to_ip(_H.unpack_from(buf, p)[0], p + 2)
    if lt == PPP_ETHER:
        if p + 8 > end:
            return -1, 0
        return _ppp_to_ip(_H.unpack_from(buf, p + 6)[0], p + 8)
    return -1, 0


def _checksum_bad(buf, pseudo: bytes, t: int, seg_len: int) -> bool:
    """Ones-complement sum over pseudo-header + segment; the sum of 16-bit words is the value mod 0xFFFF."""
    data = pseudo + bytes(buf[t : t + seg_len])
    if seg_len & 1:
        data += b"\0"
    return int.from_bytes(data, "big") % 0xFFFF != 0


def decode_tcp(lt: int, buf, p: int, caplen: int) -> Segment | None:
    """Decode one frame to its TCP segment; None when it is not (a first fragment of) TCP."""
    end = p + caplen
    ip, version = ip_offset(lt, buf, p, end)
    if ip < 0:
        return None
    if version == 4:
        if ip + 20 > end:
            return None
        vihl, _tos, total, _id, frag, _ttl, proto, _ck = _IPV4.unpack_from(buf, ip)
        if proto != 6 or vihl >> 4 != 4 or frag & 0x1FFF:
            return None
        t = ip + (vihl & 15) * 4
        seg_len = total - (vihl & 15) * 4
        src = bytes(buf[ip + 12 : ip + 16])
        dst = bytes(buf[ip + 16 : ip + 20])
        ip_end = ip + total
    else:
        if ip + 40 > end:
            return None
        payload = _H.unpack_from(buf, ip + 4)[0]
        nxt = buf[ip + 6]
        src = bytes(buf[ip + 8 : ip + 24])
        dst = bytes(buf[ip + 24 : ip + 40])
        t = ip + 40
        ip_end = t + payload
        while nxt != 6:
            if t + 8 > end:
                return None
            if nxt in _IPV6_EXT:
                nxt, t = buf[t], t + (buf[t + 1] + 1) * 8
            elif nxt == 44:  # fragment header: only the first fragment carries the TCP header
                if _H.unpack_from(buf, t + 2)[0] & 0xFFF8:
                    return None
                nxt, t = buf[t], t + 8
            elif nxt == 51:
                nxt, t = buf[t], t + (buf[t + 1] + 2) * 4
            else:
                return None
        seg_len = ip_end - t
    if t + 20 > end or seg_len < 20:
        return None
    _sport, _dport, seq, ack, off, flags, win = _TCP.unpack_from(buf, t)
    plen = seg_len - (off >> 4) * 4
    if plen < 0:
        plen = 0
    ports = bytes(buf[t : t + 4])
    key = src + dst + ports
    rkey = dst + src + ports[2:] + ports[:2]
    bad = False
    if flags & 0x07 and ip_end <= end:
        pseudo = src + dst + b"\0\x06" + seg_len.to_bytes(2, "big")
        bad = _checksum_bad(buf, pseudo, t, seg_len)
    return key, rkey, flags, win, plen, seq, ack, bad
