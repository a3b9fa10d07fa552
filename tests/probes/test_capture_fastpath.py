"""The fused little-endian pcap/Ethernet loop (`formats._pcap_fast_ethernet`, with its inline ACK,
first-letter and new-SYN handling) decides every connection exactly as the general readers do, on
segments with random flags, windows (zero too), payload lengths (odd too), sequence numbers
(retransmissions), directions and bad checksums, on a few 4-tuples reused again and again; in one
process and split between two."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from diagnose.probes.capture import synth
from diagnose.probes.capture.analysis import analyse
from diagnose.probes.capture.tcp import Connection

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
# weighted: mostly ACK/PSH-ACK (the inline path), then every SYN/FIN/RST combination and odd ones
FLAGS = ([ACK] * 8 + [PSH | ACK] * 4 + [SYN] * 3 + [SYN | ACK] * 3 + [FIN | ACK] * 3 + [RST | ACK] * 2
         + [RST] * 2 + [FIN] + [0, PSH, URG | ACK, SYN | FIN, SYN | RST, FIN | RST | ACK, SYN | ACK | PSH])


def _random_segments(seed: int, n: int) -> list[synth.Segment]:
    rng = random.Random(seed)
    tuples = [(f"10.1.0.{1 + i % 5}", 40000 + i, "10.0.0.10", (443, 80, 8080, 50000)[i % 4]) for i in range(12)]
    seqs: dict[tuple, int] = {}
    t = 1_700_000_000.0
    out = []
    for k in range(n):
        src, sport, dst, dport = rng.choice(tuples)
        if rng.random() < 0.5:
            src, sport, dst, dport = dst, dport, src, sport
        flags = rng.choice(FLAGS)
        payload = rng.choice((0, 0, 0, 1, 7, 517))
        fwd = (src, sport, dst, dport)
        seq = seqs.get(fwd, rng.randrange(1 << 32))
        if rng.random() < 0.7:  # else a retransmission: the same sequence number again
            seq = (seq + payload + (1 if flags & (SYN | FIN) else 0) + rng.choice((0, 0, 1000))) & 0xFFFFFFFF
        seqs[fwd] = seq
        t = round(t + rng.choice((0.0001, 0.001, 0.02, 45.0)), 6)  # now and then past the linger time
        win = rng.choice((0, 0, 512, 65535))
        out.append(synth.Segment(t, src, dst, sport, dport, flags, seq, 0, win, payload, k))
    return out


def _write(path: Path, segs: list[synth.Segment], link: str, big_endian: bool, bad: set[int]) -> Path:
    with open(path, "wb") as fh:
        synth.write_pcap(fh, ((s.ts, synth.LINKTYPE[link], synth.frame(link, synth.ip_packet(s, i in bad)))
                              for i, s in enumerate(segs)), synth.LINKTYPE[link], big_endian=big_endian)
    return path


def _comparable(conns: list[Connection]) -> list[tuple]:
    return sorted(dataclasses.astuple(dataclasses.replace(c, source="")) for c in conns)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fused_loop_decides_like_the_general_readers(tmp_path: Path, seed: int) -> None:
    segs = _random_segments(seed, 3000)
    bad = set(random.Random(seed).sample(range(len(segs)), 150))
    fast = _write(tmp_path / "fast.pcap", segs, "ethernet", False, bad)  # the fused loop
    general = [_write(tmp_path / "vlan.pcap", segs, "vlan", False, bad),  # link-layer decoder
               _write(tmp_path / "be.pcap", segs, "ethernet", True, bad)]  # big-endian: per-frame feeder
    want = analyse([fast], keep_all=True, jobs=1)
    conns = _comparable(want.all_connections)
    histories = "".join(c.history for c in want.all_connections)
    # the random traffic reaches the cases the fused loop handles inline and those it hands over
    assert {"w", "W", "c", "C", "d", "D", "a", "A", "S", "h", "f", "r", "q"} <= set(histories)
    assert len({c.teardown for c in want.all_connections}) >= 5 and want.total_bad_checksums > 0
    for path in general:
        got = analyse([path], keep_all=True, jobs=1)
        assert _comparable(got.all_connections) == conns, path.name
        assert got.total_bad_checksums == want.total_bad_checksums
    split = analyse([fast], keep_all=True, jobs=2)
    assert [dataclasses.astuple(c) for c in split.all_connections] == [
        dataclasses.astuple(c) for c in want.all_connections]
    assert split.counts == want.counts and split.bad_checksums == want.bad_checksums
