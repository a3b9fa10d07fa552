"""tshark as the oracle for the capture probe's per-connection teardown.

tshark decodes and groups the packets (`tcp.stream`, two-pass); the teardown label is then derived
from tshark's per-packet fields with the label definitions of issue 4, independently of our reader
and state machine. Sides are compared as `ip:port` endpoints, so the naming of originator and
responder does not matter.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

FIELDS = (
    "tcp.stream",
    "frame.number",
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "ip.dst",
    "ipv6.dst",
    "tcp.dstport",
    "tcp.flags",
    "tcp.len",
    "tcp.completeness",
)


@dataclass(frozen=True)
class OracleStream:
    stream: int
    first_frame: int
    endpoints: frozenset[str]
    teardown: str
    first_fin_by: str | None  # endpoint ip:port, or None
    first_rst_by: str | None
    completeness: int


def have_tshark() -> bool:
    return shutil.which("tshark") is not None


def _ep(ip: str, port: str) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def tshark_streams(path: Path) -> dict[int, OracleStream]:
    cmd = [
        "tshark",
        "-2",
        "-n",
        "-r",
        str(path),
        "-Y",
        "tcp",
        "-T",
        "fields",
        "-E",
        "separator=|",
        *(x for f in FIELDS for x in ("-e", f)),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    packets: dict[int, list[tuple]] = {}
    completeness: dict[int, int] = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) != len(FIELDS) or not parts[0]:
            continue
        stream, frame = int(parts[0]), int(parts[1])
        src = _ep(parts[2] or parts[3], parts[4])
        dst = _ep(parts[5] or parts[6], parts[7])
        flags = int(parts[8], 16)
        packets.setdefault(stream, []).append((frame, src, dst, flags, int(parts[9] or 0)))
        if parts[10]:
            completeness[stream] = int(parts[10])
    return {s: _label(s, pk, completeness.get(s, 0)) for s, pk in packets.items()}


def _label(stream: int, pk: list[tuple], completeness: int) -> OracleStream:
    pk.sort()
    syn = next((p for p in pk if p[3] & 0x12 == 0x02), None)
    synack = next((p for p in pk if p[3] & 0x12 == 0x12), None)
    client = syn[1] if syn else (synack[2] if synack else None)
    fins = [p for p in pk if p[3] & 0x01]
    rsts = [p for p in pk if p[3] & 0x04]
    first_fin = fins[0] if fins else None
    first_rst = rsts[0] if rsts else None
    if first_rst:
        rst_side = first_rst[1]
        fin_before = first_fin is not None and first_fin[0] < first_rst[0]
        own_fin_before = any(p[1] == rst_side and p[0] < first_rst[0] for p in fins)
        if fin_before:
            label = "reset-after-own-fin" if own_fin_before else "dirty-close"
        elif syn and not synack and rst_side != client:
            label = "refused"
        else:
            label = "reset"
    elif fins:
        label = "graceful" if len({p[1] for p in fins}) == 2 else "half-closed"
    elif syn and not synack and all(p[1] == client for p in pk):
        label = "unanswered"
    else:
        label = "open"
    return OracleStream(
        stream,
        pk[0][0],
        frozenset({pk[0][1], pk[0][2]}),
        label,
        first_fin[1] if first_fin else None,
        first_rst[1] if first_rst else None,
        completeness,
    )


def compare(path: Path, connections) -> list[str]:
    """Differences between tshark's streams and our connections (empty when they agree)."""
    oracle = tshark_streams(path)
    ours = {(c.first_frame, frozenset({c.originator, c.responder})): c for c in connections}
    problems = []
    if len(oracle) != len(connections):
        problems.append(f"{len(oracle)} tshark streams, {len(connections)} connections")
    for s in oracle.values():
        c = ours.get((s.first_frame, s.endpoints))
        if c is None:
            problems.append(f"stream {s.stream} (frame {s.first_frame}, {sorted(s.endpoints)}) not found")
            continue
        side = {"originator": c.originator, "responder": c.responder, "none": None}
        got = (c.teardown, side[c.first_fin_by], side[c.first_reset_by])
        want = (s.teardown, s.first_fin_by, s.first_rst_by)
        if got != want:
            problems.append(f"stream {s.stream} frame {s.first_frame}: ours {got}, tshark {want}")
        # tshark's completeness bits must agree with the label family
        if c.teardown == "graceful" and (not s.completeness & 16 or s.completeness & 32):
            problems.append(f"stream {s.stream}: graceful but completeness {s.completeness}")
        if c.first_reset_by != "none" and not s.completeness & 32:
            problems.append(f"stream {s.stream}: reset but completeness {s.completeness}")
    return problems


# -- packet loss ---------------------------------------------------------------------------------------
LOSS_FIELDS = (
    "tcp.stream",
    "frame.number",
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "ip.dst",
    "ipv6.dst",
    "tcp.dstport",
    "tcp.flags",
    "tcp.len",
    "tcp.seq",
    "tcp.analysis.retransmission",
    "tcp.analysis.fast_retransmission",
    "tcp.analysis.spurious_retransmission",
    "tcp.analysis.out_of_order",
    "tcp.analysis.keep_alive",
    "tcp.analysis.lost_segment",
    "tcp.analysis.ack_lost_segment",
)


@dataclass
class LossStream:
    """What tshark says of the sequence numbers of one stream."""

    endpoints: frozenset[str]
    flagged: set[int]  # frames with payload that tshark calls a retransmission (fast, spurious) or out of order
    below: set[int]  # frames with payload ending at or below the highest end seen before, keep-alives aside
    keepalives: int  # frames tshark calls a keep-alive (with one byte of payload)
    lost: int  # "previous segment(s) not captured" (a hole in the capture)
    ack_lost: int  # "ACKed segment that wasn't captured"
    handshake: bool  # a SYN was captured


def tshark_loss(path: Path) -> dict[frozenset[str], LossStream]:
    """Per stream (keyed by its two endpoints), tshark's sequence analysis, and `below` worked out here
    from tshark's relative sequence numbers: the frames Zeek counts as retransmissions (a payload that
    does not end beyond the direction's highest end so far), without keep-alive probes."""
    cmd = [
        "tshark",
        "-n",
        "-r",
        str(path),
        "-Y",
        "tcp",
        "-T",
        "fields",
        "-E",
        "separator=|",
        *(x for f in LOSS_FIELDS for x in ("-e", f)),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout
    streams: dict[int, LossStream] = {}
    high: dict[tuple[int, str], int] = {}
    for line in out.splitlines():
        p = line.split("|")
        if len(p) != len(LOSS_FIELDS) or not p[0]:
            continue
        stream, frame = int(p[0]), int(p[1])
        src, dst = _ep(p[2] or p[3], p[4]), _ep(p[5] or p[6], p[7])
        flags, length, seq = int(p[8], 16), int(p[9] or 0), int(p[10] or 0)
        s = streams.get(stream)
        if s is None:
            s = streams[stream] = LossStream(frozenset({src, dst}), set(), set(), 0, 0, 0, False)
        s.handshake |= bool(flags & 0x02)
        keepalive = bool(p[15])
        if length and any(p[i] for i in (11, 12, 13, 14)):
            s.flagged.add(frame)
        s.keepalives += keepalive and length == 1
        s.lost += bool(p[16])
        s.ack_lost += bool(p[17])
        # (relative numbers wrap too: a segment from before the first one seen is just below 2**32)
        end = (seq + (0 if flags & 0x04 else length) + bool(flags & 0x02) + bool(flags & 0x01)) % (1 << 32)
        top = high.get((stream, src))
        ahead = None if top is None else (end - top + (1 << 31)) % (1 << 32) - (1 << 31)
        if ahead is not None and length and ahead <= 0 and not keepalive:
            s.below.add(frame)
        if ahead is None or ahead > 0:
            high[stream, src] = end
    return {s.endpoints: s for s in streams.values()}
