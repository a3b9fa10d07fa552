"""A capture read by several processes (each tracking the connections it owns) gives exactly the
facts one process gives: every label, link layer and format, IPv4 and IPv6, port reuse, time going
backwards, sweeps in the middle of the file, more host pairs than sample buckets, damaged files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from diagnose.errors import InputError
from diagnose.facts import ProbeStatus
from diagnose.probes import ProbeContext
from diagnose.probes.capture import build_facts, probe
from diagnose.probes.capture.analysis import MAX_BUCKETS, analyse, analyse_share
from diagnose.probes.capture.tcp import SWEEP_EVERY, TEARDOWNS, Tracker, owner_of
from tests.conftest import run_cli
from tests.probes.capture import synth


def _stretched(segments: list[synth.Segment], factor: float) -> list[synth.Segment]:
    """The same packets with the gaps between them `factor` times longer: sweeps inside the file
    then finalise closed connections (LINGER is passed within SWEEP_EVERY frames)."""
    t0 = segments[0].ts
    return [dataclasses.replace(s, ts=round(t0 + (s.ts - t0) * factor, 6)) for s in segments]


def _reused(start: float) -> list[synth.Segment]:
    """The same 4-tuples used again: after the first connection was swept, and while it lingers."""
    out: list[synth.Segment] = []
    for k, (first, second, gap) in enumerate(
        (
            ("dirty-close", "graceful-client-first", 5000.0),
            ("server-reset", "refused", 5.0),
            ("graceful-server-first", "dirty-close", 1.0),
        )
    ):
        client, server = (f"10.9.{k}.5", 40000 + k), ("10.0.0.10", 443)
        out += synth.script_segments(synth.SCENARIOS[first], client, server, start + k, conn=9000 + 2 * k)
        out += synth.script_segments(synth.SCENARIOS[second], client, server, start + k + gap, conn=9001 + 2 * k)
    return sorted(out, key=lambda s: s.ts)


@pytest.fixture(scope="module")
def segments() -> list[synth.Segment]:
    """~40 k packets, every scenario, ~250 clients x 4 servers (more pairs per label than buckets)."""
    base = _stretched(list(synth.conversations(2200, seed=5, concurrency=60, extra_data=3)), 150.0)
    segs = base + _reused(base[-1].ts + 10)
    # time goes backwards now and then (merged interfaces, clock steps): sweeps must not depend on order
    return [dataclasses.replace(s, ts=s.ts - 400.0) if i % 997 == 500 else s for i, s in enumerate(segs)]


def _facts(paths: list[Path], jobs: int, **kw) -> list[str]:
    analysis = analyse(paths, jobs=jobs, **kw)
    out = []
    for f in build_facts(analysis):
        data = f.to_json()
        data["provenance"].pop("time", None)
        out.append(json.dumps(data, sort_keys=True))
    return out


def _same(paths: list[Path], jobs: int = 2, **kw) -> list[str]:
    one = _facts(paths, 1, **kw)
    assert _facts(paths, jobs, **kw) == one
    return one


def test_the_split_is_complete_and_balanced(tmp_path: Path, segments: list[synth.Segment]) -> None:
    path = synth.write_file(tmp_path / "eth.pcap", "pcap", synth.records_for(segments))
    assert len(segments) > 2 * SWEEP_EVERY
    whole = analyse_share([path], 5, False, 1, 0)
    parts = [analyse_share([path], 5, False, 2, i) for i in range(2)]
    total = sum(whole.raw_counts.values())
    shares = [sum(p.raw_counts.values()) for p in parts]
    assert sum(shares) == total > 2200
    assert min(shares) > total // 3  # ports balance the work
    # every worker reads every frame: the per-file counts are the same in each
    assert [p.reads[0].frames for p in parts] == [whole.reads[0].frames] * 2
    assert [p.tcp_packets for p in parts] == [whole.tcp_packets] * 2


def test_fast_path_capture_gives_the_same_facts(tmp_path: Path, segments: list[synth.Segment]) -> None:
    path = synth.write_file(tmp_path / "eth.pcap", "pcap", synth.records_for(segments))
    facts = _same([path])
    labels = {json.loads(f)["attrs"]["teardown"] for f in facts if '"capture.connection"' in f}
    assert labels == set(TEARDOWNS)
    summary = json.loads(facts[0])["attrs"]
    assert summary["connections"] == 2200 + 6
    # more host pairs than sample buckets for some label: the bucket cap is exercised
    analysis = analyse([path], jobs=2)
    assert max(len(b) for b in analysis.samples.values()) == MAX_BUCKETS
    _same([path], jobs=3)


def test_every_connection_in_the_same_order(tmp_path: Path, segments: list[synth.Segment]) -> None:
    path = synth.write_file(tmp_path / "eth.pcap", "pcap", synth.records_for(segments))
    facts = _same([path], keep_all=True, samples=3)
    conns = [json.loads(f) for f in facts if '"capture.connection"' in f]
    assert len(conns) == 2206
    reused = [c for c in conns if c["attrs"]["originator"].startswith("10.9.")]
    assert len(reused) == 6


@pytest.mark.parametrize("link", ["vlan", "sll2", "raw", "null", "pppoe"])
def test_general_decoder_link_layers(tmp_path: Path, segments: list[synth.Segment], link: str) -> None:
    part = segments[:9000] + segments[-60:]
    path = synth.write_file(tmp_path / f"{link}.pcap", "pcap", synth.records_for(part, link), synth.LINKTYPE[link])
    _same([path])


@pytest.mark.parametrize("fmt", ["pcapng", "netmon2.3", "pcap-ns-be"])
def test_other_formats(tmp_path: Path, segments: list[synth.Segment], fmt: str) -> None:
    path = synth.write_file(tmp_path / f"c.{fmt}", fmt, synth.records_for(segments[:12000]))
    _same([path])


def test_ipv6_and_several_files(tmp_path: Path) -> None:
    v6 = _stretched(list(synth.conversations(600, seed=3, concurrency=40, ipv6=True)), 150.0)
    v4 = list(synth.conversations(300, seed=4, concurrency=30))
    a = synth.write_file(tmp_path / "v6.pcap", "pcap", synth.records_for(v6))
    b = synth.write_file(tmp_path / "v4.pcapng", "pcapng", synth.records_for(v4, "sll"))
    facts = _same([a, b])
    assert any('"[fd00::' in f for f in facts)


def test_netmon_text_export(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    with open(path, "w", encoding="utf-8") as fh:
        synth.write_netmon_text(fh, list(synth.conversations(200, seed=8, concurrency=20)), addresses=True)
    _same([path])


@pytest.mark.parametrize("fmt", ["pcap", "pcapng", "netmon2.1"])
def test_truncated_files_stop_at_the_same_offset(tmp_path: Path, segments: list[synth.Segment], fmt: str) -> None:
    path = synth.write_file(tmp_path / f"cut.{fmt}", fmt, synth.records_for(segments[:20000]))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3 + 7])
    facts = _same([path])
    summary = json.loads(facts[0])["attrs"]
    assert summary["partial"] is True and summary["stopped_at"]


def test_spawned_workers_give_the_same_facts(tmp_path: Path, segments: list[synth.Segment]) -> None:
    path = synth.write_file(tmp_path / "eth.pcap", "pcap", synth.records_for(segments[:8000]))
    assert _facts([path], 2, method="spawn") == _facts([path], 1)


def test_a_file_that_is_not_a_capture_fails_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "notes.bin"
    path.write_bytes(b"\x00\x01\x02\x03" * 100)
    with pytest.raises(InputError) as one:
        analyse([path], jobs=1)
    with pytest.raises(InputError) as two:
        analyse([path], jobs=2)
    assert str(one.value) == str(two.value)
    ctx = ProbeContext()
    result = probe(ctx, {"paths": [str(path)], "jobs": 2})
    assert result.status is ProbeStatus.UNAVAILABLE


def test_ownership_is_the_same_in_both_directions() -> None:
    key = bytes([10, 1, 0, 5, 10, 0, 0, 10, 0x9C, 0x41, 0x01, 0xBB])
    rkey = key[4:8] + key[:4] + key[10:12] + key[8:10]
    for jobs in (2, 3, 4):
        assert owner_of(key, jobs) == owner_of(rkey, jobs)
    assert owner_of("a|b|40001|443|TCP1", 2) == owner_of("b|a|443|40001|TCP1", 2) == ((40001 ^ 443) & 0xFF) % 2
    # a worker keeps only its own connections
    tracker = Tracker(lambda c: None, 2, owner_of(key, 2))
    tracker.packet(1, 1.0, key, None, 0x02, 1000, 0, 1, 0, False)
    other = key[:9] + bytes([key[9] ^ 1]) + key[10:]
    tracker.packet(2, 1.0, other, None, 0x02, 1000, 0, 1, 0, False)
    assert set(tracker.conns) == {key, rkey}


def test_cli_jobs_option(tmp_path: Path, segments: list[synth.Segment]) -> None:
    path = synth.write_file(tmp_path / "eth.pcap", "pcap", synth.records_for(segments[:6000]))
    outs = []
    for jobs in ("1", "2"):
        done = run_cli("probe", "capture", "--jobs", jobs, "--connections", "--format", "json", str(path))
        assert done.returncode == 0, done.stderr
        facts = json.loads(done.stdout)["facts"]
        for f in facts:
            f["provenance"].pop("time", None)
        outs.append(facts)
    assert outs[0] == outs[1] and len(outs[0]) > 300
