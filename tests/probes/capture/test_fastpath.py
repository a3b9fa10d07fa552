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

from diagnose.probes.capture import formats
from diagnose.probes.capture.analysis import analyse
from diagnose.probes.capture.tcp import Connection
from tests.probes.capture import synth


def _write(path: Path, segs: list[synth.Segment], link: str, big_endian: bool, bad: set[int]) -> Path:
    with open(path, "wb") as fh:
        synth.write_pcap(
            fh,
            ((s.ts, synth.LINKTYPE[link], synth.frame(link, synth.ip_packet(s, i in bad))) for i, s in enumerate(segs)),
            synth.LINKTYPE[link],
            big_endian=big_endian,
        )
    return path


def _comparable(conns: list[Connection]) -> list[tuple]:
    return sorted(dataclasses.astuple(dataclasses.replace(c, source="")) for c in conns)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fused_loop_decides_like_the_general_readers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    monkeypatch.setattr(formats, "_fastcap", None)  # the Python readers (test_accel.py: the C one)
    segs = synth.random_segments(3000, seed, gap=0.25)
    bad = set(random.Random(seed).sample(range(len(segs)), 150))
    fast = _write(tmp_path / "fast.pcap", segs, "ethernet", False, bad)  # the fused loop
    general = [
        _write(tmp_path / "vlan.pcap", segs, "vlan", False, bad),  # link-layer decoder
        _write(tmp_path / "be.pcap", segs, "ethernet", True, bad),
    ]  # big-endian: per-frame feeder
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
        dataclasses.astuple(c) for c in want.all_connections
    ]
    assert split.counts == want.counts and split.bad_checksums == want.bad_checksums
