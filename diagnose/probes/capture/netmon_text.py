"""Network Monitor 3.x frame-summary text export (as pasted in the original case).

One frame per line, columns separated by tabs or spaces:

    1348 11:34:15.5026040 10.5716040 TCP TCP:Flags=...A...F, SrcPort=HTTPS(443), DstPort=31024,
         PayloadLen=0, Seq=1162679467, Ack=3797497206, Win=7457 (scale factor 0x0) = 7457 {TCP:203, IPv4:1}

(one line in the file). Frame number, time of day, time offset, optional process/source/destination
columns, protocol, description, conversation ids. The flag field has 8 positions `CEUAPRSF` (or 6,
`UAPRSF`, in NetMon 1.x/2.x) with `.` for a clear bit; text pasted through a word processor turns
`...` into `…`, so flags are read by the letters present. `[Bad CheckSum]`, `[ReTransmit #n]` and
`[Continuation to #n]` may precede `Flags=`. Without address columns, a connection is keyed by its
`{TCP:n}` conversation id and ports, and its endpoints are shown as `?:port`.

Frames of protocols above TCP (TLS, HTTP) carry no flags; they are counted and extend the connection
of their conversation id.
"""

from __future__ import annotations

import codecs
import ipaddress
import re

from diagnose.bounds import MAX_TEXT_CAPTURE_BYTES, open_regular
from diagnose.probes.capture.tcp import ACK, FIN, PSH, RST, SYN, Tracker

_FLAG_BITS = {"C": 0x80, "E": 0x40, "U": 0x20, "A": ACK, "P": PSH, "R": RST, "S": SYN, "F": FIN}
_FRAME = re.compile(r"^\s*(\d+)[\t ]+(.*)$")
_TCP = re.compile(
    r"Flags=(?P<flags>[CEUAPRSF.…·]{1,8}),\s*SrcPort=(?P<sport>[^,]+),\s*DstPort=(?P<dport>[^,]+),"
    r"(?:\s*PayloadLen=(?P<plen>\d+),)?\s*Seq=(?P<seq>\d+)(?:\s*-\s*\d+)?,"
    r"(?:\s*Ack=(?P<ack>\d+),)?\s*Win=(?P<win>\d+)(?:\s*\(scale factor 0x[0-9a-fA-F]+\)\s*=\s*(?P<swin>\d+))?"
)
_PORT = re.compile(r"^\s*(?:[A-Za-z][\w.-]*\()?(\d{1,5})\)?\s*$")
_CONV = re.compile(r"\{TCP:(\d+)(?:,\s*IPv(?:4|6):(\d+))?[^}]*\}")
_TIME_OF_DAY = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$")
_OFFSET = re.compile(r"^\d+\.\d+$")


def _decode(raw: bytes) -> str:
    if raw.startswith(codecs.BOM_UTF16_LE) or raw.startswith(codecs.BOM_UTF16_BE):
        return raw.decode("utf-16", errors="replace")
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def _address(token: str) -> str | None:
    try:
        return str(ipaddress.ip_address(token.strip("[]")))
    except ValueError:
        return None


def looks_like(text: str) -> bool:
    """True when a line of `text` (a file's start) is a NetMon TCP frame line, as `read_text` reads them."""
    for line in text.splitlines()[:2000]:
        m = _FRAME.match(line)
        if m and (_CONV.search(m.group(2)) or _TCP.search(m.group(2))):
            return True
    return False


def read_text(data, result, tracker: Tracker) -> bool:
    """Read a NetMon text export into `tracker`; False when no line looks like a NetMon TCP frame."""
    raw = bytes(data[:MAX_TEXT_CAPTURE_BYTES]) if data else b""
    if len(data) > MAX_TEXT_CAPTURE_BYTES:
        result.stop(
            MAX_TEXT_CAPTURE_BYTES,
            f"a text export is read up to {MAX_TEXT_CAPTURE_BYTES:,} bytes "
            "(diagnose.bounds.MAX_TEXT_CAPTURE_BYTES); the rest was not read",
        )
    if b"\0" in raw[:4096] and not raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return False
    text = _decode(raw)
    lines = text.splitlines()
    frames = tcp = 0
    conv_keys: dict[str, str] = {}
    offset = 0
    ends_clean = text.endswith(("\n", "\r"))
    for lineno, line in enumerate(lines, 1):
        line_start = offset
        offset += len(line) + 1
        m = _FRAME.match(line)
        if not m:
            continue
        number, rest = int(m.group(1)), m.group(2)
        conv = _CONV.search(rest)
        flags_m = _TCP.search(rest)
        if not conv and not flags_m:
            if "Flags=" in rest and lineno == len(lines) and not ends_clean:
                result.stop(len(text[:line_start].encode("utf-8")), f"line {lineno} (frame {number}) cut short")
            continue
        if result.format == "":
            result.format = "netmon text"
        frames += 1
        ts = _time_of(rest)
        head = rest[: flags_m.start()] if flags_m else rest
        addrs = [a for tok in re.split(r"[\t ]+", head) if (a := _address(tok))]
        conv_id = f"TCP{conv.group(1)}" if conv else ""
        if not flags_m:
            if "Flags=" in rest:
                result.skipped["NetMon text frame line not understood"] += 1
                if lineno == len(lines) and not ends_clean:
                    result.stop(len(text[:line_start].encode("utf-8")), f"line {lineno} (frame {number}) cut short")
            key = conv_keys.get(conv_id)
            ent = tracker.conns.get(key) if key else None
            if ent is not None:
                ent[0][1] = number  # the conversation continues (a TLS/HTTP frame): last frame
            continue
        sport_m, dport_m = _PORT.match(flags_m.group("sport")), _PORT.match(flags_m.group("dport"))
        if not sport_m or not dport_m:
            result.skipped["NetMon text frame with unreadable ports"] += 1
            continue
        flags = 0
        for ch in flags_m.group("flags"):
            flags |= _FLAG_BITS.get(ch, 0)
        src, dst = (addrs[0], addrs[1]) if len(addrs) >= 2 else ("?", "?")
        sport, dport = sport_m.group(1), dport_m.group(1)
        key = f"{src}|{dst}|{sport}|{dport}|{conv_id}"
        rkey = f"{dst}|{src}|{dport}|{sport}|{conv_id}"
        if conv_id:
            conv_keys[conv_id] = key
        win = int(flags_m.group("swin") or flags_m.group("win"))
        plen = int(flags_m.group("plen") or 0)
        bad = "[Bad CheckSum]" in rest or "[Bad Checksum]" in rest
        tcp += 1
        ack = int(flags_m.group("ack") or 0)
        tracker.packet(number, ts, key, rkey, flags, win, plen, int(flags_m.group("seq")), ack, bad)
    result.frames += frames
    result.tcp_frames += tcp
    tracker.tcp_packets += tcp
    return frames > 0


def _time_of(rest: str) -> float:
    """The time offset column (seconds since capture start), else the time of day."""
    tokens = re.split(r"[\t ]+", rest.strip(), maxsplit=3)[:3]
    tod = None
    for tok in tokens:
        if _OFFSET.match(tok):
            return float(tok)
        t = _TIME_OF_DAY.match(tok)
        if t and tod is None:
            tod = int(t.group(1)) * 3600 + int(t.group(2)) * 60 + float(t.group(3))
    return tod or 0.0


def frame_lines(path) -> list[tuple[int, int, str]]:
    """(line number, frame number, text) of every frame line of a text export, for citations."""
    out = []
    with open_regular(path) as fh:
        text = _decode(fh.read(MAX_TEXT_CAPTURE_BYTES))
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _FRAME.match(line)
        if m and (_CONV.search(m.group(2)) or _TCP.search(m.group(2))):
            out.append((lineno, int(m.group(1)), line.strip()))
    return out
