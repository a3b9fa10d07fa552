"""The capture readers' C accelerator (_fastcap.c) against the pure-Python readers, which are the reference.

Every input is read both ways and must give the same finished connections (every slot of the
tracker's state lists, finishing-order keys included, handed over in the same order), the same
per-file result (frames, TCP frames, skipped frames, where and why reading stopped), the same
counters and the same facts, in one process and split between two. Inputs: synthetic captures of
every teardown label, link layer and format (pcap in both byte orders and resolutions, pcapng with
several interfaces and sections, simple packet blocks, gzip'd); random traffic with odd flags, zero
windows, retransmissions, port reuse, bad checksums, time going backwards and sweeps in the middle;
odd frames (IP options, fragments, IPv6 extension headers, other protocols, frames cut short or
padded, bad header lengths); truncated and fuzzed files; tcpdump captures of real loopback
connections; the corpus captures when present. The accelerator's own contract (where it stops, what
it leaves to Python, its arguments) is tested directly.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import diagnose.probes.capture.formats as formats
from diagnose.compat import zip_strict
from diagnose.errors import InputError
from diagnose.probes.capture import build_facts
from diagnose.probes.capture.analysis import analyse
from diagnose.probes.capture.formats import read_capture
from diagnose.probes.capture.tcp import C_ORDER, SWEEP_EVERY, TEARDOWNS, Tracker, ending_of
from tests.probes.capture import synth
from tests.probes.loopback import Tcpdump, cannot_capture, free_port, serve_once

accelerated = pytest.mark.skipif(formats._fastcap is None, reason="the C accelerator is not built here")
REPO = Path(__file__).resolve().parents[3]
# link layers the accelerator decodes itself; frames of the others go to the Python feeder
DECODED = {"ethernet", "vlan", "qinq", "pppoe", "sll", "sll2", "raw"}


def test_the_accelerator_is_built_in_ci() -> None:
    """CI installs from scratch with a compiler: a silent fall-back to pure Python must not pass there."""
    if not os.environ.get("CI"):
        pytest.skip("only enforced in CI")
    assert formats._fastcap is not None, "diagnose/probes/capture/_fastcap.c was not compiled by the install"


class _Counting:
    """The accelerator, counting the frames it read (so a test knows the fast way was taken)."""

    def __init__(self) -> None:
        self.real = formats._fastcap
        self.frames = 0

    def pcap(self, data: Any, off: int, frame: int, *args: Any) -> tuple[int, int, int]:
        got = self.real.pcap(data, off, frame, *args)  # type: ignore[union-attr]
        self.frames += got[1] - frame
        return got  # type: ignore[no-any-return]

    def pcapng(self, data: Any, off: int, frame: int, *args: Any) -> tuple[int, int, int]:
        got = self.real.pcapng(data, off, frame, *args)  # type: ignore[union-attr]
        self.frames += got[1] - frame
        return got  # type: ignore[no-any-return]


def _counting_feeder(calls: list[int]) -> Callable[..., Any]:
    """formats._feeder whose feed counts its calls (the frames left to Python)."""
    real = formats._feeder

    def make(data: Any, tracker: Tracker) -> Callable[..., bool]:
        feed = real(data, tracker)

        def counted(*args: Any) -> bool:
            calls[0] += 1
            return feed(*args)  # type: ignore[no-any-return]

        return counted

    return make


Trace = typing.Tuple[Any, ...]


def _trace(path: Path, jobs: int = 1, index: int = 0) -> Trace:
    """Everything a read leaves behind: the per-file result, the finished state lists in the order the
    tracker handed them over, and the tracker's counters (or the error, for a file that is not a capture)."""
    found: list[list] = []
    tracker = Tracker(found.append, jobs, index)
    try:
        result = read_capture(path, tracker)
    except InputError as exc:
        return ("error", str(exc))
    tracker.finish_all()
    return vars(result), found, tracker.tcp_packets, tracker.bad_checksums


@dataclasses.dataclass
class Both:
    fast: Trace
    pure: Trace
    c_frames: int  # frames read by the accelerator
    fed: int  # frames it left to the Python feeder


def _both(path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int = 1, index: int = 0) -> Both:
    counting, calls = _Counting(), [0]
    with monkeypatch.context() as m:
        m.setattr(formats, "_fastcap", counting)
        m.setattr(formats, "_feeder", _counting_feeder(calls))
        fast = _trace(path, jobs, index)
    with monkeypatch.context() as m:
        m.setattr(formats, "_fastcap", None)
        pure = _trace(path, jobs, index)
    return Both(fast, pure, counting.frames, calls[0])


def _same(path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int = 1, index: int = 0) -> Both:
    both = _both(path, monkeypatch, jobs, index)
    assert both.fast == both.pure, path.name
    return both


def _facts(paths: list[Path], jobs: int, **kw: Any) -> list[str]:
    out = []
    for f in build_facts(analyse(paths, jobs=jobs, **kw)):
        data = f.to_json()
        data["provenance"].pop("time", None)
        out.append(json.dumps(data, sort_keys=True))
    return out


def _same_facts(paths: list[Path], monkeypatch: pytest.MonkeyPatch, **kw: Any) -> list[str]:
    """The facts of the accelerated and the pure readers, with one worker and with two: all equal."""
    with monkeypatch.context() as m:
        m.setattr(formats, "_fastcap", None)
        want = _facts(paths, 1, **kw)
        assert _facts(paths, 2, **kw) == want
    assert _facts(paths, 1, **kw) == want
    assert _facts(paths, 2, **kw) == want
    return want


# -- inputs ---------------------------------------------------------------------------------------------
def _traffic(seed: int, n: int, ipv6: bool = False) -> list[synth.Segment]:
    """Random segments (`synth.random_segments`) on 40 4-tuples; now and then a gap past the linger
    time (and always one shortly before a sweep) or a step back in time."""
    return synth.random_segments(n, seed, tuples=40, ipv6=ipv6, gap=0.002, backwards=0.001, gap_every=SWEEP_EVERY)


# where a frame of each link layer says which protocol follows (offset, bytes)
_PROTO_AT = {"ethernet": 12, "vlan": 16, "qinq": 20, "pppoe": 24, "sll": 14, "sll2": 0}


def _odd_ip(ip: bytes, rng: random.Random) -> bytes:
    """An IP packet made odd in one of the ways the readers must tell apart."""
    kind = rng.randrange(7)
    if ip[0] >> 4 == 4:
        if kind == 0:  # options (NOP ... EOL): the general decoder's way
            words = rng.randrange(1, 11)
            hdr = bytearray(ip[:20])
            hdr[0] = 0x40 | (5 + words)
            hdr[2:4] = (len(ip) + 4 * words).to_bytes(2, "big")
            return bytes(hdr) + b"\x01" * (4 * words - 1) + b"\x00" + ip[20:]
        if kind == 1:  # a later fragment: no TCP header in it
            return ip[:6] + bytes([0x20 | rng.randrange(32), rng.randrange(1, 256)]) + ip[8:]
        if kind == 2:  # a first fragment (more fragments): still TCP
            return ip[:6] + b"\x20\x00" + ip[8:]
        if kind == 3:  # UDP, ICMP
            return ip[:9] + bytes([rng.choice((17, 1))]) + ip[10:]
        if kind == 4:  # a header length below 5
            return bytes([0x40 | rng.randrange(5)]) + ip[1:]
        if kind == 5:  # total length wrong: too small for the headers, or more than there is
            return ip[:2] + rng.choice((rng.randrange(40), len(ip) + rng.randrange(1, 300))).to_bytes(2, "big") + ip[4:]
        return bytes([0x60 | (ip[0] & 15)]) + ip[1:]  # version 6 behind an IPv4 ethertype
    if kind in (0, 1, 2):  # extension headers: hop-by-hop, destination options, fragment (first or later)
        nxt = (0, 60, 44)[kind]
        ext = bytes([6, 0]) + (b"\x01\x04\0\0\0\0" if nxt != 44 else rng.choice((b"\0\0", b"\0\x08")) + b"\0\0\0\x07")
        hdr = bytearray(ip[:40])
        hdr[6] = nxt
        hdr[4:6] = (len(ip) - 40 + 8).to_bytes(2, "big")
        return bytes(hdr) + ext + ip[40:]
    if kind == 3:
        return ip[:6] + bytes([rng.choice((17, 58, 59))]) + ip[7:]
    if kind == 4:  # payload length too small for a TCP header, or more than there is
        return ip[:4] + rng.choice((rng.randrange(20), len(ip) + 7)).to_bytes(2, "big") + ip[6:]
    return ip


def _odd_frames(segments: list[synth.Segment], link: str, seed: int, bad: float = 0.05) -> list[synth.Record]:
    """Frames of `link`; about one in four made odd: the IP packet (see `_odd_ip`), another protocol
    than IP, cut short anywhere, or padded after the IP packet."""
    rng = random.Random(seed)
    lt = synth.LINKTYPE[link]
    out = []
    for seg in segments:
        ip = synth.ip_packet(seg, rng.random() < bad)
        r = rng.random()
        if r < 0.12:
            ip = _odd_ip(ip, rng)
        data = synth.frame(link, ip)
        if 0.12 <= r < 0.15:  # not IP at all
            at = _PROTO_AT.get(link)
            if at is not None:
                data = data[:at] + rng.choice((b"\x08\x06", b"\x88\xcc", b"\x00\x57", b"\x81\x00")) + data[at + 2 :]
            else:
                data = rng.choice((b"\x63\0\0\0", b"\x20")) + data[len(data) - len(ip) + 1 :]
        elif 0.15 <= r < 0.2:  # cut short (a small snap length)
            data = data[: rng.randrange(len(data))]
        elif 0.2 <= r < 0.23:  # padded (Ethernet minimum size, trailers)
            data = data + bytes(rng.randrange(1, 30))
        out.append((seg.ts, lt, data))
    return out


def _write(path: Path, fmt: str, records: list[synth.Record], linktype: int = 1, **kw: Any) -> Path:
    if not fmt.startswith("pcapng"):
        kw = {}  # (time resolution options are pcapng's)
    with open(path, "wb") as fh:
        if fmt == "pcap":
            synth.write_pcap(fh, records, linktype)
        elif fmt == "pcap-be":
            synth.write_pcap(fh, records, linktype, big_endian=True)
        elif fmt == "pcap-ns-be":
            synth.write_pcap(fh, records, linktype, nanos=True, big_endian=True)
        elif fmt == "pcap-ns":
            synth.write_pcap(fh, records, linktype, nanos=True)
        else:
            synth.write_pcapng(fh, records, big_endian=fmt.endswith("-be"), **kw)
    return path


@accelerated
# -- every label, link layer and format -------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["pcap", "pcap-ns-be", "pcapng", "pcapng-be"])
@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("link", synth.LINKS)
def test_every_label_link_layer_and_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: str, ipv6: bool, fmt: str
) -> None:
    segments = list(synth.conversations(66, seed=11, concurrency=12, ipv6=ipv6))
    path = _write(tmp_path / f"{link}.{fmt}", fmt, list(synth.records_for(segments, link)), synth.LINKTYPE[link])
    both = _same(path, monkeypatch)
    result, found, tcp, _bad = both.fast
    assert result["frames"] == tcp == len(segments) and not result["stopped_at"]
    assert len(found) == 66
    assert both.c_frames == len(segments)  # every frame walked by the accelerator ...
    assert both.fed == (0 if link in DECODED else len(segments))  # ... and decoded there, or by Python


@accelerated
@pytest.mark.parametrize("fmt", ["pcap", "pcap-ns-be", "pcapng"])
def test_times_near_zero_are_the_same_floats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """A clock that starts at 0 (a device without time): seconds + fraction x scale is rounded twice, as
    Python does it (a fused multiply-add would give another float for about one time in ten)."""
    segments = list(synth.conversations(200, seed=12, concurrency=20, start=1.0))
    path = _write(tmp_path / f"zero.{fmt}", fmt, list(synth.records_for(segments)), 1, tsresol={1: 9})
    both = _same(path, monkeypatch)
    assert both.c_frames == len(segments)
    times = [t for c in both.fast[1] for t in (c[6], c[7])]  # C_T0, C_TL
    assert min(times) >= 1.0 and max(times) < 4.0


@accelerated
def test_snapped_simple_packet_blocks_are_read_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simple packet blocks cut to a snap length announce more bytes than they hold: the packet is what
    the block holds (the TCP header is there, the payload not all)."""
    segments = list(synth.conversations(30, seed=13, concurrency=5))
    out = bytearray(struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28))
    out += struct.pack("<IIHHI", 1, 20, 1, 0, 80) + struct.pack("<I", 20)
    for seg in segments:
        data = synth.frame("ethernet", synth.ip_packet(seg))
        kept = data[:80] + bytes(-min(len(data), 80) % 4)
        out += struct.pack("<III", 3, 16 + len(kept), len(data)) + kept + struct.pack("<I", 16 + len(kept))
    path = tmp_path / "snapped.pcapng"
    path.write_bytes(bytes(out))
    both = _same(path, monkeypatch)
    assert both.c_frames == len(segments) == both.fast[0]["frames"] and not both.fast[0]["stopped_at"]


@accelerated
def test_every_label_in_the_facts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    segments = list(synth.conversations(400, seed=3, concurrency=40))
    v6 = list(synth.conversations(120, seed=4, concurrency=20, ipv6=True))
    a = _write(tmp_path / "a.pcap", "pcap", list(synth.records_for(segments)))
    b = _write(tmp_path / "b.pcapng", "pcapng", list(synth.records_for(v6, "sll")))
    facts = _same_facts([a, b], monkeypatch, keep_all=True)
    labels = {json.loads(f)["attrs"]["teardown"] for f in facts if '"capture.connection"' in f}
    assert labels == set(TEARDOWNS)


@accelerated
def test_gzipped_pcap_and_pcapng(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    segments = list(synth.conversations(80, seed=6, concurrency=10))
    for fmt in ("pcap", "pcapng"):
        plain = _write(tmp_path / f"x.{fmt}", fmt, list(synth.records_for(segments, "vlan")))
        packed = tmp_path / f"x.{fmt}.gz"
        packed.write_bytes(gzip.compress(plain.read_bytes()))
        assert _same(packed, monkeypatch).c_frames == len(segments)


@accelerated
# -- random traffic, odd frames ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("link", "fmt"),
    [
        ("ethernet", "pcap"),
        ("ethernet", "pcap-be"),
        ("vlan", "pcap-ns"),
        ("qinq", "pcapng"),
        ("pppoe", "pcap"),
        ("sll", "pcap-ns-be"),
        ("sll2", "pcapng-be"),
        ("raw", "pcap"),
        ("null", "pcap"),
    ],
)
@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
def test_random_traffic_with_odd_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: str, fmt: str, ipv6: bool
) -> None:
    segments = _traffic(len(link) + ipv6, 2 * SWEEP_EVERY + 3000, ipv6)  # sweeps in the middle
    path = _write(tmp_path / f"{link}.{fmt}", fmt, _odd_frames(segments, link, seed=len(fmt)), synth.LINKTYPE[link])
    both = _same(path, monkeypatch)
    result, found, tcp, bad = both.fast
    assert result["frames"] == len(segments) > tcp > len(segments) * 0.8  # some frames are not TCP
    assert bad > 0 and len(found) > 1000
    histories = "".join(c[5] for c in found)
    assert {"w", "W", "c", "C", "d", "D", "a", "A", "S", "h", "f", "r", "q", "^"} <= set(histories)
    # some connections were finished by a sweep, some by a port reuse (finishing-order phases 1 and 0)
    assert {c[C_ORDER][2] for c in found} == {0, 1, 2}
    assert both.c_frames == len(segments)
    if link in DECODED:
        assert 0 < both.fed < len(segments) * 0.1  # only the odd ones (IPv6 extension headers, header length < 5)
    else:
        assert both.fed == len(segments)


@accelerated
@pytest.mark.parametrize(
    ("link", "fmt", "ipv6"),
    [
        ("ethernet", "pcap", False),
        ("ethernet", "pcapng-be", True),
        ("vlan", "pcap-ns", False),
        ("pppoe", "pcapng", True),
        ("sll", "pcap", False),
        ("raw", "pcap-be", True),
    ],
)
def test_lossy_traffic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: str, fmt: str, ipv6: bool) -> None:
    """Retransmissions, holes behind ranges, content gaps, keep-alives, wrapping sequence numbers,
    connections picked up midstream (`synth.lossy`): the same sequence state, slot for slot, with the
    sequence numbers of most segments done in C and the rest by the tracker's `sequence` and `control`."""
    segments, truth = synth.lossy(250, seed=len(link) + 3 * ipv6, ipv6=ipv6)
    path = _write(tmp_path / f"lossy.{fmt}", fmt, list(synth.records_for(segments, link)), synth.LINKTYPE[link])
    calls = {"sequence": 0, "control": 0, "control_flags": 0}
    real = {name: getattr(Tracker, name) for name in calls}

    def counted(name: str) -> Any:
        def call(self: Tracker, *args: Any) -> Any:
            calls[name] += 1
            return real[name](self, *args)

        return call

    both = _same(path, monkeypatch)
    assert both.c_frames == len(segments) and both.fed == 0
    with monkeypatch.context() as m:  # the accelerated read again, counting the tracker's calls
        for name in calls:
            m.setattr(Tracker, name, counted(name))
        _trace(path)
    # most ACKs and data in place in C, the others to the tracker; most SYN-ACKs, FINs and RSTs too
    assert 0 < calls["sequence"] < len(segments) // 3
    assert 0 < calls["control"] < calls["control_flags"]
    histories = "".join(c[5] for c in both.fast[1])
    assert {"t", "T", "g", "G"} <= set(histories)
    assert sum(t.gaps for t in truth.values()) > 0
    _same_facts([path], monkeypatch, keep_all=True, samples=3)


@accelerated
def test_pcapng_interfaces_sections_and_simple_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interfaces of several link types and resolutions declared along the way, simple packet blocks
    (no time), a second section with its own byte order and interfaces."""
    segments = _traffic(7, SWEEP_EVERY + 3000)
    links = ["ethernet", "sll2", "raw", "null", "vlan"]
    records = [
        (s.ts, synth.LINKTYPE[links[s.conn % 5]], synth.frame(links[s.conn % 5], synth.ip_packet(s))) for s in segments
    ]
    first, second = tmp_path / "a.pcapng", tmp_path / "b.pcapng"
    with open(first, "wb") as fh:
        synth.write_pcapng(fh, records[:5000], tsresol={1: 9, 276: 3, 101: 6, 0: 7, 113: 5})
    with open(second, "wb") as fh:
        synth.write_pcapng(fh, records[5000:], big_endian=True, simple=True)
    path = tmp_path / "two-sections.pcapng"
    path.write_bytes(first.read_bytes() + second.read_bytes())
    both = _same(path, monkeypatch)
    assert both.fast[0]["frames"] == len(segments) == both.c_frames


# -- damaged files ----------------------------------------------------------------------------------------
def _damage_inputs(tmp_path: Path) -> dict[str, bytes]:
    segments = _traffic(5, 1500)
    v6 = _traffic(6, 1500, ipv6=True)
    out = {
        "eth.pcap": _write(tmp_path / "e.pcap", "pcap", _odd_frames(segments, "ethernet", 1)),
        "vlan6.pcap": _write(tmp_path / "v.pcap", "pcap-ns-be", _odd_frames(v6, "vlan", 2)),
        "sll.pcapng": _write(
            tmp_path / "s.pcapng", "pcapng", _odd_frames(segments, "sll", 3) + _odd_frames(v6, "raw", 4)
        ),
        "be.pcapng": _write(tmp_path / "b.pcapng", "pcapng-be", _odd_frames(v6, "sll2", 5), simple=True),
    }
    data = {name: path.read_bytes() for name, path in out.items()}
    data["eth.pcap.gz"] = gzip.compress(data["eth.pcap"])
    return data


@accelerated
def test_truncated_files_stop_at_the_same_offset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    partial = 0
    for name, data in _damage_inputs(tmp_path).items():
        cuts = sorted({len(data) * k // 41 for k in range(1, 41)} | {len(data) - 1, 23, 24, 25, 40, 41})
        for cut in cuts:
            path = tmp_path / f"cut-{name}"
            path.write_bytes(data[:cut])
            both = _same(path, monkeypatch)
            partial += both.fast[0] != "error" and both.fast[0]["stopped_at"] is not None
    assert partial > 150  # cut inside a record or block, nearly always


@accelerated
def test_fuzzed_files_read_the_same_both_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(8)
    stopped = 0
    for name, data in _damage_inputs(tmp_path).items():
        if name.endswith(".gz"):
            continue
        for _ in range(50):
            path = tmp_path / f"fuzz-{name}"
            path.write_bytes(synth.damaged(data, rng, 40))
            both = _same(path, monkeypatch)
            stopped += both.fast[0] != "error" and both.fast[0]["stopped_at"] is not None
    assert stopped > 20  # the damage is seen, the same way


@accelerated
# -- split between workers ------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_split_between_two_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    segments = _traffic(9, 2 * SWEEP_EVERY + 500)
    path = _write(tmp_path / f"t.{fmt}", fmt, _odd_frames(segments, "ethernet", 9))
    for index in (0, 1):
        _same(path, monkeypatch, jobs=2, index=index)
    facts = _same_facts([path], monkeypatch, keep_all=True, samples=3)
    assert len(facts) > 1000


@accelerated
def test_the_command_gives_the_same_output_both_ways(tmp_path: Path) -> None:
    segments = list(synth.conversations(3000, seed=2, concurrency=100))
    path = _write(tmp_path / "c.pcap", "pcap", list(synth.records_for(segments)))
    outs = []
    for pure in ("", "1"):
        env = {**os.environ, "PYTHONPATH": str(REPO), "DIAGNOSE_PURE_PYTHON": pure}
        for jobs in ("1", "2"):
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "diagnose",
                    "probe",
                    "capture",
                    "--jobs",
                    jobs,
                    "--connections",
                    "--format",
                    "json",
                    str(path),
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            facts = json.loads(done.stdout)["facts"]
            for f in facts:
                f["provenance"].pop("time", None)
            outs.append(facts)
    assert len(outs[0]) > 3000 and all(o == outs[0] for o in outs)


@accelerated
def test_pure_python_is_forced_by_the_environment() -> None:
    code = "import diagnose.probes.capture.formats as f; print(f._fastcap is None)"
    for value, want in (("1", "True"), ("", "False")):
        env = {**os.environ, "PYTHONPATH": str(REPO), "DIAGNOSE_PURE_PYTHON": value}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        assert done.stdout.strip() == want, done.stderr


# -- real captures ----------------------------------------------------------------------------------------
def _client(port: int, behaviour: str) -> None:
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"ok" not in data:
            data += c.recv(1000)
        if behaviour == "graceful":
            c.shutdown(socket.SHUT_WR)
            return
        while c.recv(1000):  # the server's FIN, then an abortive close: a dirty close
            pass
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@accelerated
def test_tcpdump_loopback_capture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reason = cannot_capture()
    if reason:
        pytest.skip(reason)
    expected = ["dirty-close", "dirty-close", "graceful", "graceful"]
    for attempt in range(2):  # a second capture only when the first lost packets on a busy machine
        path = tmp_path / f"lo{attempt}.pcap"
        ports = [free_port() for _ in range(4)]
        dump = Tcpdump(path, " or ".join(f"tcp port {p}" for p in ports))
        try:
            for port, behaviour in zip_strict(ports, ("graceful", "dirty-close", "graceful", "dirty-close")):
                ready = threading.Event()
                server = threading.Thread(target=serve_once, args=(port, behaviour, ready))
                server.start()
                ready.wait(5)
                _client(port, behaviour)
                server.join(10)
        finally:
            dump.stop()
        both = _same(path, monkeypatch)  # accelerated and pure agree on every capture, whatever it holds
        labels = sorted(ending_of(c)[0] for c in both.fast[1])
        if labels == expected:
            break
    assert labels == expected, f"ports {ports}; tcpdump: {dump.stats.strip()}"
    assert both.c_frames == both.fast[0]["frames"] > 20 and both.fed == 0
    assert both.fast[3] > 0  # loopback checksums are left to the NIC: counted as bad, the same way
    _same_facts([path], monkeypatch, keep_all=True)


@accelerated
def test_corpus_captures(corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pcaps = sorted(p for p in (corpus / "pcaps").iterdir() if p.suffix in (".pcap", ".pcapng"))
    assert pcaps
    for path in pcaps:
        both = _same(path, monkeypatch)
        assert both.c_frames == both.fast[0]["frames"] > 0, path.name
    _same_facts(pcaps, monkeypatch, keep_all=True)


# -- the accelerator's contract -----------------------------------------------------------------------------
def _handlers(tracker: Tracker, data: Any, **replace: Any) -> tuple:
    feed = formats._feeder(data, tracker)
    release = formats._Releaser(data)
    parts = list(formats._handlers(tracker, feed, release))
    names = [
        "conns",
        "open_syn",
        "control",
        "control_flags",
        "packet",
        "log",
        "sequence",
        "sweep",
        "release",
        "feed",
        "jobs",
        "index",
    ]
    for name, value in replace.items():
        parts[names.index(name)] = value
    return tuple(parts)


def _pcap_bytes(n: int, link: str = "ethernet") -> tuple[bytes, list[int]]:
    segments = list(synth.conversations(n // 10 + 1, seed=1, concurrency=5))[:n]
    buf = bytearray(synth.pcap_header(synth.LINKTYPE[link]))
    starts = []
    for seg in segments:
        starts.append(len(buf))
        buf += synth.pcap_record(seg.ts, synth.frame(link, synth.ip_packet(seg)))
    return bytes(buf), starts


@accelerated
def test_pcap_stops_before_a_record_cut_short_and_leaves_it() -> None:
    data, starts = _pcap_bytes(40)
    fast = formats._fastcap
    for cut, whole in (
        (starts[30] + 9, 30),
        (starts[30] + 16, 30),
        (starts[30] + 17, 30),
        (len(data) - 1, 39),
        (len(data), 40),
        (24, 0),
        (starts[1], 1),
    ):
        tracker = Tracker(lambda c: None)
        off, frame, tcp = fast.pcap(data[:cut], 24, 0, 1, False, 1e-6, True, _handlers(tracker, data[:cut]))
        assert (frame, tcp) == (whole, whole), cut
        assert off == (starts[whole] if whole < 40 else len(data))
        # the state is that of the pure reader given the whole records only
        ref = Tracker(lambda c: None)
        pure = bytearray(data[:off])
        result = formats.ReadResult("x")
        saved, formats._fastcap = formats._fastcap, None
        try:
            formats._read_pcap(bytes(pure), result, ref)
        finally:
            formats._fastcap = saved
        assert result.frames == frame and not result.partial
        assert tracker.conns.keys() == ref.conns.keys()
        assert [e[0] for e in tracker.conns.values()] == [e[0] for e in ref.conns.values()]


@accelerated
def test_pcap_resumes_where_it_was_told() -> None:
    """Called again from where it stopped, it goes on as if it had not stopped."""
    data, starts = _pcap_bytes(60)
    one, two = Tracker(lambda c: None), Tracker(lambda c: None)
    fast = formats._fastcap
    whole = fast.pcap(data, 24, 0, 1, False, 1e-6, False, _handlers(one, data))
    first = fast.pcap(data[: starts[25] + 3], 24, 0, 1, False, 1e-6, False, _handlers(two, data))
    assert first[:2] == (starts[25], 25)
    rest = fast.pcap(data, first[0], first[1], 1, False, 1e-6, False, _handlers(two, data))
    assert rest[:2] == whole[:2] and first[2] + rest[2] == whole[2]
    assert [e[0] for e in one.conns.values()] == [e[0] for e in two.conns.values()]


def _pcapng_blocks(big: bool = False) -> tuple[bytes, dict[str, int]]:
    segments = list(synth.conversations(4, seed=2, concurrency=2))
    records = [(s.ts, 1, synth.frame("ethernet", synth.ip_packet(s))) for s in segments]
    path_bytes = bytearray()
    fh = io.BytesIO()
    synth.write_pcapng(fh, records, big_endian=big)
    path_bytes += fh.getvalue()
    o = ">" if big else "<"
    marks = {}
    # a block of an unknown type (skipped), then a second IDB, then packets on it
    marks["unknown"] = len(path_bytes)
    path_bytes += struct.pack(o + "III", 0x0BAD, 16, 0) + struct.pack(o + "I", 16)
    marks["idb"] = len(path_bytes)
    path_bytes += struct.pack(o + "IIHHI", 1, 20, 1, 0, 0) + struct.pack(o + "I", 20)
    marks["after_idb"] = len(path_bytes)
    fh = io.BytesIO()
    synth.write_pcapng(fh, records[:3], big_endian=big)
    body = fh.getvalue()
    body = body[28 + 32 :]  # without its SHB and IDB: packets of interface 0
    path_bytes += body
    return bytes(path_bytes), marks


@accelerated
@pytest.mark.parametrize("big", [False, True])
def test_pcapng_stops_at_headers_damage_and_undeclared_interfaces(big: bool) -> None:
    data, marks = _pcapng_blocks(big)
    fast = formats._fastcap
    tracker = Tracker(lambda c: None)
    h = _handlers(tracker, data)
    ifaces = [(1, 1e-6, 0)]
    # from the first packet block: it reads the packets, skips the unknown block, stops at the IDB
    off, frame, tcp = fast.pcapng(data, 28 + 32, 0, big, ifaces, h)
    assert off == marks["idb"] and frame == tcp > 0
    # at a section header or an interface block it does nothing
    assert fast.pcapng(data, 0, 5, big, ifaces, h) == (0, 5, 0)
    assert fast.pcapng(data, marks["idb"], 5, big, ifaces, h) == (marks["idb"], 5, 0)
    # after the IDB with only one interface known: the packets of interface 0 are read
    off2, frame2, _ = fast.pcapng(data, marks["after_idb"], 0, big, ifaces, h)
    assert off2 == len(data) and frame2 == 3
    # no interface known: it stops before the packet, which is Python's to count as skipped
    assert fast.pcapng(data, marks["after_idb"], 7, big, [], h) == (marks["after_idb"], 7, 0)
    # a damaged trailing length, a block past the end, a block too short: stopped before, untouched
    o = ">" if big else "<"
    p = marks["after_idb"]
    blen = struct.unpack_from(o + "I", data, p + 4)[0]
    for damaged in (
        data[: p + blen - 4] + b"\xff\xff\xff\xff" + data[p + blen :],
        data[: p + blen - 1],
        data[: p + 4] + struct.pack(o + "I", 28) + data[p + 8 :],
        data[: p + 4] + struct.pack(o + "I", 13) + data[p + 8 :],
        data[: p + 8] + struct.pack(o + "I", 5) + data[p + 12 :],
    ):
        t2 = Tracker(lambda c: None)
        iface_ok = [(1, 1e-6, 0), (1, 1e-6, 0)]
        got = fast.pcapng(damaged, p, 9, big, iface_ok, _handlers(t2, damaged))
        assert got == (p, 9, 0) and not t2.conns


@accelerated
def test_arguments_are_checked() -> None:
    data, _ = _pcap_bytes(5)
    fast = formats._fastcap
    tracker = Tracker(lambda c: None)
    with pytest.raises(TypeError, match="handlers"):
        fast.pcap(data, 24, 0, 1, False, 1e-6, True, _handlers(tracker, data)[:5])
    with pytest.raises(TypeError, match="conns must be a dict"):
        fast.pcap(data, 24, 0, 1, False, 1e-6, True, _handlers(tracker, data, conns=[]))
    with pytest.raises(TypeError, match="not callable"):
        fast.pcap(data, 24, 0, 1, False, 1e-6, True, _handlers(tracker, data, control=3))
    for jobs, index in ((0, 0), (2, 2), (2, -1)):
        with pytest.raises(ValueError, match="jobs"):
            fast.pcap(data, 24, 0, 1, False, 1e-6, True, _handlers(tracker, data, jobs=jobs, index=index))
    with pytest.raises(TypeError, match="interfaces"):
        fast.pcapng(data, 24, 0, False, [(1, 1e-6)], _handlers(tracker, data))


@accelerated
def test_a_broken_tracker_entry_is_an_error_not_a_crash() -> None:
    segments = synth.script_segments(
        synth.SCENARIOS["graceful-client-first"], ("10.1.0.1", 40000), ("10.0.0.10", 443), 1_700_000_000.0, 0
    )
    data = synth.pcap_header(1)
    starts = []
    for seg in segments:
        starts.append(len(data))
        data += synth.pcap_record(seg.ts, synth.frame("ethernet", synth.ip_packet(seg)))
    fast = formats._fastcap
    for n in range(5):
        tracker = Tracker(lambda c: None)
        h = _handlers(tracker, data)
        fast.pcap(data[: starts[2]], 24, 0, 1, False, 1e-6, True, h)  # SYN, SYN-ACK
        key = next(iter(tracker.conns))
        c, d = tracker.conns[key]
        broken = ((c, 2), (c[:5], d), ([*c[:4], "x", *c[5:]], d), (c,), "x")[n]
        tracker.conns[key] = broken  # type: ignore[assignment]
        with pytest.raises(TypeError, match="_fastcap"):
            fast.pcap(data, starts[2], 2, 1, False, 1e-6, True, h)  # the client's ACK


@accelerated
def test_an_error_in_a_callback_comes_out() -> None:
    data, _ = _pcap_bytes(10)

    def failing(*args: Any) -> None:
        raise RuntimeError("from the tracker")

    tracker = Tracker(lambda c: None)
    with pytest.raises(RuntimeError, match="from the tracker"):
        formats._fastcap.pcap(data, 24, 0, 1, False, 1e-6, True, _handlers(tracker, data, open_syn=failing))
    null = _pcap_bytes(3, "null")[0]
    with pytest.raises(RuntimeError, match="from the tracker"):
        formats._fastcap.pcap(null, 24, 0, 0, False, 1e-6, True, _handlers(tracker, null, feed=failing))
