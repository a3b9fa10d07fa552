"""Packet loss in captures: Zeek's history letters t/T (retransmitted payload) and g/G (content gaps),
keep-alive probes, missed_bytes, and the facts made of them.

Checked against: hand-made segments for each rule (wraparound, keep-alives, midstream, FIN and RST,
ranges behind holes, the logarithmic letters, the bound on ranges); `synth.lossy` captures, whose
truth is worked out in the generator on unwrapped byte offsets, read by the pure-Python readers and by
the C accelerator, in several formats and link layers, in one process and split between two; tshark's
own sequence analysis of the same captures; and real traffic with real loss, captured by tcpdump in a
private network namespace (a congested loopback that drops packets, and a capture that misses data
segments the receivers do get).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import diagnose.probes.capture.formats as formats
from diagnose.kinds import fact_kinds
from diagnose.probes import ProbeContext
from diagnose.probes.capture import build_facts
from diagnose.probes.capture import probe as capture_probe
from diagnose.probes.capture.analysis import analyse
from diagnose.probes.capture.tcp import C_HI, C_OOO, MAX_RANGES, Connection, Tracker, build_connection
from tests.conftest import REPO, run_cli
from tests.probes.capture import synth
from tests.probes.capture.oracle import have_tshark, tshark_loss
from tests.probes.capture.test_match import CAS, TMG, S, fw_row, match, segments, write_pcap, write_w3c
from tests.probes.loopback import cannot_capture

SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08
CLIENT, SERVER = ("10.1.0.5", 40000), ("10.0.0.10", 443)
M = 1 << 32


# -- hand-made segments ---------------------------------------------------------------------------------
class Conv:
    """One connection's segments, written by direction (0 client, 1 server) and sequence offset."""

    def __init__(self, isn_c: int = 1000, isn_s: int = 5000, handshake: bool = True) -> None:
        self.isn = [isn_c, isn_s]
        self.segs: list[synth.Segment] = []
        if handshake:
            self.add(0, SYN, -1, 0)
            self.add(1, SYN | ACK, -1, 0, ack=0)
            self.add(0, ACK, 0, 0, ack=0)

    def add(self, d: int, flags: int, off: int, payload: int, ack: int | None = None, win: int = 500) -> None:
        """Direction `d` sends `payload` bytes at offset `off`, acknowledging the other side's offset `ack`."""
        src, dst = (CLIENT, SERVER) if d == 0 else (SERVER, CLIENT)
        a = (self.isn[1 - d] + ack) % M if ack is not None else 0
        self.segs.append(
            synth.Segment(
                float(len(self.segs)),
                src[0],
                dst[0],
                src[1],
                dst[1],
                flags | (ACK if ack is not None else 0),
                (self.isn[d] + off) % M,
                a,
                win,
                payload,
                0,
            )
        )

    def run(self) -> tuple[Connection, list]:
        states: list[list] = []
        tracker = Tracker(states.append)
        tracker.start_source("t")
        for i, s in enumerate(self.segs, 1):
            key = (
                ipaddress.ip_address(s.src).packed
                + ipaddress.ip_address(s.dst).packed
                + s.sport.to_bytes(2, "big")
                + s.dport.to_bytes(2, "big")
            )
            tracker.packet(i, s.ts, key, None, s.flags, s.win, s.payload, s.seq, s.ack, False)
        tracker.finish_all()
        [state] = states
        return build_connection(state, "t"), state


def figures(conn: Connection) -> tuple:
    return conn.retransmissions, conn.keepalives, conn.gaps, conn.missed_bytes


def test_a_segment_sent_twice_is_a_retransmission() -> None:
    c = Conv()
    c.add(0, PSH, 0, 100, ack=0)
    c.add(1, PSH, 0, 1000, ack=100)
    c.add(1, PSH, 0, 1000, ack=100)  # frame 6: again
    c.add(0, 0, 100, 0, ack=1000)
    conn, _ = c.run()
    assert figures(conn) == (1, 0, 0, 0) and conn.first_loss_frame == 6
    assert conn.history == "ShADdt" and conn.loss_before_end


def test_data_the_peer_acknowledges_that_the_capture_never_showed_is_a_gap() -> None:
    c = Conv()
    c.add(0, PSH, 0, 100, ack=0)
    c.add(1, PSH, 0, 1000, ack=100)
    # the server's bytes 1000-2999 were received but not captured
    c.add(1, PSH, 3000, 500, ack=100)
    c.add(0, 0, 100, 0, ack=3500)  # frame 7
    conn, _ = c.run()
    assert figures(conn) == (0, 0, 1, 2000) and conn.first_loss_frame == 7
    assert conn.history == "ShADdg"


def test_two_holes_behind_ranges_are_two_gaps() -> None:
    c = Conv()
    c.add(1, PSH, 0, 1000, ack=0)
    c.add(1, PSH, 1500, 500, ack=0)  # hole 1000-1499
    c.add(1, PSH, 2500, 500, ack=0)  # hole 2000-2499
    c.add(1, PSH, 1000, 500, ack=0)  # the first hole filled late: a retransmission (below the highest end)
    c.add(0, 0, 0, 0, ack=3000)  # the second hole acknowledged: a gap
    conn, state = c.run()
    assert figures(conn) == (1, 0, 1, 500)
    assert state[C_OOO + 1] is None


def test_a_keepalive_probe_is_counted_apart() -> None:
    """Windows probes an idle connection with one byte below what it has sent: Zeek counts it as a
    retransmission (its history shows T); it is no evidence of loss."""
    c = Conv()
    c.add(0, PSH, 0, 100, ack=0)
    c.add(1, 0, 0, 0, ack=100)
    c.add(0, 0, 99, 1, ack=0)  # the probe
    c.add(1, 0, 0, 0, ack=100)
    conn, _ = c.run()
    assert figures(conn) == (0, 1, 0, 0) and conn.first_loss_frame is None and not conn.loss_before_end
    assert "T" in conn.history


def test_sequence_numbers_that_wrap() -> None:
    c = Conv(isn_c=M - 50, isn_s=M - 700)
    c.add(0, PSH, 0, 100, ack=0)  # crosses 2**32
    c.add(1, PSH, 0, 1000, ack=100)  # crosses 2**32
    c.add(1, PSH, 1000, 1000, ack=100)
    c.add(0, 0, 100, 0, ack=2000)
    clean, _ = c.run()
    assert figures(clean) == (0, 0, 0, 0)
    c.add(1, PSH, 0, 1000, ack=100)  # again, from before the wrap
    c.add(1, PSH, 3000, 100, ack=100)  # 2000-2999 not captured ...
    c.add(0, 0, 100, 0, ack=3100)  # ... and acknowledged
    lossy, _ = c.run()
    assert figures(lossy) == (1, 0, 1, 1000)


def test_a_connection_picked_up_midstream_has_no_gaps() -> None:
    """As in Zeek: without the handshake, data acknowledged before the first segment seen is not a gap."""
    c = Conv(handshake=False)
    c.add(1, PSH, 5000, 1000, ack=300)
    c.add(0, 0, 300, 0, ack=9000)  # beyond what was seen: the connection is not established for us
    c.add(1, PSH, 5000, 1000, ack=300)  # retransmissions still count
    conn, _ = c.run()
    assert figures(conn) == (1, 0, 0, 0)


def test_acknowledging_a_fin_or_beyond_it_is_no_gap_and_a_reset_is_not_trusted() -> None:
    c = Conv()
    c.add(1, PSH, 0, 1000, ack=0)
    c.add(1, FIN, 1000, 0, ack=0)
    c.add(0, 0, 0, 0, ack=1001)  # the FIN acknowledged
    c.add(0, 0, 0, 0, ack=1500)  # beyond the FIN: capped there
    c.add(0, RST, 0, 0, ack=1600, win=0)
    conn, _ = c.run()
    assert figures(conn) == (0, 0, 0, 0) and conn.teardown == "dirty-close"
    r = Conv()
    r.add(1, PSH, 0, 1000, ack=0)
    r.add(0, RST, 0, 0, ack=4000, win=0)  # a RST that acknowledges unseen data: no gap (Zeek: not clean)
    r.add(0, PSH, 0, 10, ack=4000)  # data after the client's own RST: its sequence numbers are not trusted
    r.add(0, PSH, 0, 10, ack=4000)
    conn, _ = r.run()
    assert figures(conn) == (0, 0, 0, 0)


def test_syn_and_rst_far_off_are_not_trusted() -> None:
    c = Conv()
    c.add(1, PSH, 0, 1000, ack=0)
    c.add(1, RST, 5_000_000, 0, ack=0)  # 5 MB ahead: its sequence number does not move the highest end
    conn, state = c.run()
    assert state[C_HI + 1] == -1  # (dead after the server's RST)
    assert figures(conn) == (0, 0, 0, 0)


def test_retransmission_and_gap_letters_are_logarithmic() -> None:
    c = Conv()
    c.add(1, PSH, 0, 1000, ack=0)
    for _ in range(120):
        c.add(1, PSH, 0, 1000, ack=0)
    conn, _ = c.run()
    assert conn.retransmissions == 120
    assert conn.history.count("t") == 3  # the 1st, the 10th, the 100th
    g = Conv()
    for k in range(12):
        g.add(1, PSH, 2000 * k, 1000, ack=0)
        g.add(0, 0, 0, 0, ack=2000 * k + 2000)  # each time 1000 bytes never seen
    conn, _ = g.run()
    assert (conn.gaps, conn.missed_bytes) == (12, 12000) and conn.history.count("g") == 2


def test_ranges_behind_a_hole_stay_bounded() -> None:
    """Many holes at once (a capture losing every other segment) keep at most MAX_RANGES ranges; the
    closest merge (the hole between is taken as seen), so fewer bytes are counted missing."""
    c = Conv()
    for k in range(1, 3 * MAX_RANGES):
        c.add(1, PSH, 200 * k, 100, ack=0)  # 100 bytes seen, 100 not: a new range each time
    tracker = Tracker(lambda s: None)
    tracker.start_source("t")
    for i, s in enumerate(c.segs, 1):
        key = (
            ipaddress.ip_address(s.src).packed
            + ipaddress.ip_address(s.dst).packed
            + s.sport.to_bytes(2, "big")
            + s.dport.to_bytes(2, "big")
        )
        tracker.packet(i, s.ts, key, None, s.flags, s.win, s.payload, s.seq, s.ack, False)
    [state] = list(tracker.live())
    assert len(state[C_OOO + 1]) == 2 * MAX_RANGES
    assert len(state) == 43  # the state list itself does not grow


# -- synthetic captures with their truth ------------------------------------------------------------------
def _by_client(conns: list[Connection], segs: list[synth.Segment]) -> dict[int, Connection]:
    index = {(s.src, s.sport): s.conn for s in segs}
    return {index[c.orig_ip, int(c.originator.rsplit(":", 1)[1])]: c for c in conns}


def _check_truth(path: Path, segs: list[synth.Segment], truth: dict[int, synth.LossTruth], jobs: int = 1) -> None:
    conns = analyse([path], keep_all=True, jobs=jobs).all_connections
    assert conns is not None and len(conns) == len(truth)
    got = _by_client(conns, segs)
    for i, t in truth.items():
        c = got[i]
        assert (c.retransmissions, c.keepalives, c.gaps, c.missed_bytes, c.teardown) == (
            t.retransmissions,
            t.keepalives,
            t.gaps,
            t.missed_bytes,
            t.teardown,
        ), (i, c.history)


@pytest.mark.parametrize("pure", [False, True], ids=["accelerated", "pure"])
@pytest.mark.parametrize(
    ("link", "fmt", "ipv6"),
    [
        ("ethernet", "pcap", False),
        ("vlan", "pcapng", False),
        ("sll2", "pcap", True),
        ("raw", "pcapng", True),
        ("null", "pcap", False),
    ],
)
def test_lossy_captures_show_their_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pure: bool, link: str, fmt: str, ipv6: bool
) -> None:
    if pure:
        monkeypatch.setattr(formats, "_fastcap", None)
    segs, truth = synth.lossy(150, seed=len(link) + ipv6, ipv6=ipv6)
    path = synth.write_file(tmp_path / f"lossy.{fmt}", fmt, synth.records_for(segs, link), synth.LINKTYPE[link])
    _check_truth(path, segs, truth)
    totals = [sum(getattr(t, f) for t in truth.values()) for f in ("retransmissions", "keepalives", "gaps")]
    assert all(n > 10 for n in totals)  # every kind of event happens
    assert any(s.seq < 5000 for s in segs if s.payload) and any(s.seq > M - 5000 for s in segs if s.payload)


def test_lossy_netmon_reads_like_its_pcap_and_a_split_run_like_one(tmp_path: Path) -> None:
    segs, truth = synth.lossy(200, seed=21)
    pcap = synth.write_file(tmp_path / "lossy.pcap", "pcap", synth.records_for(segs))
    cap = synth.write_file(tmp_path / "lossy.cap", "netmon2.3", synth.records_for(segs))
    _check_truth(cap, segs, truth)
    _check_truth(pcap, segs, truth, jobs=2)


def test_a_netmon_text_export_is_not_analysed(tmp_path: Path) -> None:
    """A text export shows frames of protocols above TCP without their TCP fields: no loss figures,
    rather than wrong ones."""
    segs, _truth = synth.lossy(30, seed=2)
    path = tmp_path / "export.txt"
    with open(path, "w", encoding="utf-8") as fh:
        synth.write_netmon_text(fh, segs, addresses=True)
    result = capture_probe(ProbeContext(), {"paths": [str(path)], "tmg_addresses": ["10.2.0.1"], "connections": True})
    fact_kinds().check(result.facts, "test")
    total = next(f for f in result.facts if f.kind == "capture.teardown_summary" and f.subject == "all")
    assert total.attrs["loss_analysed"] == 0 and "connections_with_retransmissions" not in total.attrs
    conns = [f for f in result.facts if f.kind == "capture.connection"]
    assert len(conns) == 30 and all(not f.attrs["loss_analysed"] and "retransmissions" not in f.attrs for f in conns)


# -- facts ----------------------------------------------------------------------------------------------
def test_loss_facts_per_scope_label_and_connection(tmp_path: Path) -> None:
    segs, truth = synth.lossy(120, seed=5)
    path = synth.write_file(tmp_path / "lossy.pcap", "pcap", synth.records_for(segs))
    facts = build_facts(analyse([path], tmg_addresses=["10.2.0.1"]))
    fact_kinds().check(facts, "test")
    total = next(f.attrs for f in facts if f.kind == "capture.teardown_summary" and f.subject == "all")
    with_rx = sum(1 for t in truth.values() if t.retransmissions)
    assert total["connections_with_retransmissions"] == with_rx
    assert total["retransmitted_packets"] == sum(t.retransmissions for t in truth.values())
    assert total["connections_with_gaps"] == sum(1 for t in truth.values() if t.gaps)
    assert total["missed_bytes"] == sum(t.missed_bytes for t in truth.values())
    assert total["share_with_retransmissions"] == round(with_rx / 120, 4) and total["loss_analysed"] == 120
    assert len(total["loss_samples"]) == 5
    per_label = {
        f.attrs["teardown"]: f.attrs for f in facts if f.kind == "capture.teardown_loss" and f.attrs["scope"] == "all"
    }
    assert set(per_label) == {"dirty-close", "graceful", "reset"}
    for label, attrs in per_label.items():
        assert attrs["missed_bytes"] == sum(t.missed_bytes for t in truth.values() if t.teardown == label)
        assert attrs["connections"] == sum(1 for t in truth.values() if t.teardown == label)
    assert sum(a["retransmitted_packets"] for a in per_label.values()) == total["retransmitted_packets"]
    # the connections with loss are cited and come as connection facts, with their figures
    lossy = [f.attrs for f in facts if f.kind == "capture.connection" and f.attrs.get("first_loss_frame")]
    assert len(lossy) >= 5 and all(a["loss_analysed"] and a["loss_before_end"] in (True, False) for a in lossy)


def test_status64_entries_matched_to_connections_that_lost_packets(tmp_path: Path) -> None:
    """A dirty close whose server retransmitted before its FIN, a clean dirty close, a server reset with
    a content gap: the match says which entries' connections lost packets before they ended."""
    retransmitted = segments("dirty-close", (TMG, 31024), (CAS, 443), S + 0.5, 0)
    data = next(i for i, s in enumerate(retransmitted) if s.src == CAS and s.payload)
    retransmitted.insert(data + 1, dataclasses.replace(retransmitted[data], ts=retransmitted[data].ts + 0.005))
    clean = segments("dirty-close", (TMG, 31025), (CAS, 443), S + 5.5, 1)
    missed = segments("dirty-close", (TMG, 31026), (CAS, 443), S + 10.5, 2)
    missed = [s for s in missed if not (s.src == CAS and s.payload)]  # the capture missed the server's data
    cap = write_pcap(tmp_path / "tmg.pcap", retransmitted + clean + missed)
    log = write_w3c(
        tmp_path / "ISALOG_20240504_FWS_000.w3c",
        [
            fw_row(S + 1, f"{TMG}:31024", f"{CAS}:443"),
            fw_row(S + 6, f"{TMG}:31025", f"{CAS}:443"),
            fw_row(S + 11, f"{TMG}:31026", f"{CAS}:443"),
        ],
    )
    attrs, _ = match([cap], [log])
    assert (attrs["matched"], attrs["matched_dirty_close_by_tmg"], attrs["matched_loss_analysed"]) == (3, 3, 3)
    assert (attrs["matched_with_loss_before_end"], attrs["matched_dirty_close_with_loss"]) == (2, 2)
    assert attrs["share_matched_with_loss"] == round(2 / 3, 4)
    first, second = attrs["loss_samples"]
    assert "31024" in first and "(dirty close by TMG; 1 retransmission before the end)" in first
    assert "31026" in second and "(dirty close by TMG; 1 gap (1400 bytes missed) before the end)" in second


# -- the whole run --------------------------------------------------------------------------------------
def _server_leg_run(tmp_path: Path, events: float) -> dict[str, Any]:
    """`diagnose run` on a capture of TMG's connections to the server (`synth.lossy`, TMG the client)
    and a Firewall log with a Status 64 entry for each dirty close, at its last packet."""
    segs, truth = synth.lossy(60, seed=9, events=events, client=TMG, server=CAS)
    cap = synth.write_file(tmp_path / "tmg-internal.pcap", "pcap", synth.records_for(segs))
    last = {s.conn: s for s in segs}
    rows = [
        fw_row(int(last[i].ts), f"{TMG}:{last[i].sport if last[i].src == TMG else last[i].dport}", f"{CAS}:443")
        for i, t in truth.items()
        if t.teardown == "dirty-close"
    ]
    log = write_w3c(tmp_path / "ISALOG_20231114_FWS_000.w3c", rows)
    done = run_cli("run", "--capture", str(cap), "--log", str(log), "--tmg", TMG, "--no-input", "--format", "json")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_a_lossy_server_leg_is_a_fault_even_when_the_entries_are_dirty_closes(tmp_path: Path) -> None:
    doc = _server_leg_run(tmp_path, events=0.25)
    causes = {c["id"]: c for c in doc["causes"]}
    loss = causes["network-packet-loss"]
    # the fault decides the verdict; the entries are dirty closes all the same (ranked by certainty)
    assert doc["verdict"] == "fault" and doc["headline"].startswith("fault: Packets are lost between TMG")
    assert loss["certainty"] >= 0.5 and causes["dirty-close-by-design"]["certainty"] >= 0.5
    fired = {r["id"] for r in loss["rules"]}
    assert {"server-leg-retransmissions", "status64-connections-lost-packets", "resets-after-loss"} <= fired
    dirty = causes["dirty-close-by-design"]
    assert "status64-loss-weakens-dirty-close" in {r["id"] for r in dirty["rules"]}
    assert "before the end" in json.dumps(loss)  # the matched entries are cited with their loss


def test_a_clean_server_leg_speaks_against_packet_loss(tmp_path: Path) -> None:
    doc = _server_leg_run(tmp_path, events=0.0)
    assert doc["verdict"] == "benign" and doc["causes"][0]["id"] == "dirty-close-by-design"
    assert "network-packet-loss" not in {c["id"] for c in doc["causes"]}  # ruled out: not ranked
    loss = next(c for c in doc["ruled_out"] if c["id"] == "network-packet-loss")
    assert loss["certainty"] < 0 and [r["id"] for r in loss["rules"]] == ["server-leg-without-loss"]


# -- tshark ---------------------------------------------------------------------------------------------
tshark = pytest.mark.skipif(not have_tshark(), reason="tshark is not installed")


def _compare_with_tshark(path: Path, exact: bool) -> dict[str, int]:
    """Our figures per connection against tshark's sequence analysis of the same capture.

    Retransmissions: the frames with payload that end at or below their direction's highest end so
    far (worked out from tshark's relative sequence numbers), keep-alives aside, are ours exactly, and
    tshark flags every one of them (retransmission, fast or spurious retransmission, out of order).
    tshark also flags a retransmission that carries new data beyond the highest end (Zeek does not:
    its end is beyond), so `exact` (no such segments in the capture) asks for the sets to be equal.
    Keep-alives: the same count. Gaps: a connection with a gap has a hole tshark sees too ("previous
    segment not captured" or "ACKed segment that wasn't captured"); a hole tshark sees is ours as a
    gap, or was filled later (a retransmission), or lies in a connection picked up midstream (Zeek
    counts no gaps there)."""
    oracle = tshark_loss(path)
    conns = analyse([path], keep_all=True).all_connections
    assert conns is not None and len(conns) == len(oracle)
    seen = {"retransmissions": 0, "keepalives": 0, "gaps": 0, "holes": 0}
    for c in conns:
        s = oracle[frozenset({c.originator, c.responder})]
        assert c.retransmissions == len(s.below), c.history
        assert s.below <= s.flagged, c.history
        if exact:
            assert s.flagged == s.below, c.history
        assert c.keepalives == s.keepalives, c.history
        if c.gaps:
            assert s.lost or s.ack_lost, c.history
        if s.lost or s.ack_lost:
            assert c.gaps or c.retransmissions or not s.handshake, c.history
        seen["retransmissions"] += c.retransmissions
        seen["keepalives"] += c.keepalives
        seen["gaps"] += c.gaps
        seen["holes"] += s.lost + s.ack_lost
    return seen


@tshark
def test_lossy_synthetic_captures_agree_with_tshark(tmp_path: Path) -> None:
    for seed, ipv6 in ((3, False), (4, True)):
        segs, truth = synth.lossy(200, seed=seed, ipv6=ipv6)
        path = synth.write_file(tmp_path / f"lossy{seed}.pcap", "pcap", synth.records_for(segs))
        seen = _compare_with_tshark(path, exact=True)
        assert seen["retransmissions"] == sum(t.retransmissions for t in truth.values()) > 50
        assert seen["keepalives"] > 20 and seen["gaps"] > 20


# -- real traffic, real loss, in a private network namespace ---------------------------------------------
def _namespace_capture(out: Path, mode: str) -> dict[str, Any]:
    """Run tests/probes/netns_capture.py in a new network namespace (`unshare --net`): its loopback is
    its own, so the queueing discipline it sets changes nothing on this host. A run in which tcpdump
    itself dropped packets (a busy machine) is made again, up to three times in all; `complete` in the
    result says whether the captures are."""
    reason = cannot_capture()
    if reason:
        pytest.skip(reason)
    for tool in ("unshare", "tc", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _attempt in range(3):
        done = subprocess.run(
            ["unshare", "--net", sys.executable, "-m", "tests.probes.capture.netns", str(out), mode],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=180,
        )
        if done.returncode != 0 and ("unshare failed" in done.stderr or "qdisc kind is unknown" in done.stderr):
            pytest.skip(f"no private network namespace with a token bucket here: {done.stderr.strip()}")
        assert done.returncode == 0, done.stderr
        stats = json.loads(done.stdout.splitlines()[-1])
        stats["complete"] = all(f"\n{s}".count("\n0 packets dropped by kernel") == 1 for s in stats["tcpdump"])
        if stats["complete"]:
            break
    return stats


def _both_ways(path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Every connection's figures, read with the accelerator and without: the same."""

    def read() -> list[tuple]:
        conns = analyse([path], keep_all=True).all_connections or []
        return sorted((c.originator, c.history, figures(c), c.first_loss_frame) for c in conns)

    fast = read()
    with monkeypatch.context() as m:
        m.setattr(formats, "_fastcap", None)
        assert read() == fast
    return fast


@tshark
def test_a_congested_loopback_loses_packets_and_the_senders_retransmit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stats = _namespace_capture(tmp_path, "congested")
    assert stats["received"] == [1_500_000] * 3
    assert "dropped 0," not in stats["qdisc"]  # the queue did drop packets
    path = tmp_path / "congested.pcap"
    rows = _both_ways(path, monkeypatch)
    assert len(rows) == 3 and sum(r[2][0] for r in rows) > 0
    seen = _compare_with_tshark(path, exact=False)
    assert seen["retransmissions"] > 0
    facts = build_facts(analyse([path], tmg_addresses=["127.0.0.1"]))
    per_label = next(f.attrs for f in facts if f.kind == "capture.teardown_loss" and f.subject == "all/dirty-close")
    assert per_label["connections"] == 3 and per_label["connections_with_retransmissions"] >= 1
    assert per_label["connections_with_loss_before_end"] >= 1


@tshark
def test_a_capture_that_misses_segments_shows_content_gaps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same traffic captured twice: whole, and without the data segments the filter leaves out. The
    missed bytes of the second are the bytes of those segments (with a FIN's sequence number when the
    segment carried the FIN) that the receiver acknowledged in the first, in an ACK without RST (as
    in Zeek, an ACK in a RST reveals no gap: the client's RST may be the first to acknowledge the
    server's last segment)."""
    stats = _namespace_capture(tmp_path, "capture-loss")
    assert stats["received"] == [1_000_000] * 2
    if not stats["complete"]:
        pytest.skip(f"tcpdump dropped packets in three runs (the machine is busy): {stats['tcpdump']}")
    full = _both_ways(tmp_path / "full.pcap", monkeypatch)
    assert all(r[2] == (0, 0, 0, 0) for r in full)
    lossy = _both_ways(tmp_path / "lossy.pcap", monkeypatch)
    out = subprocess.run(
        [
            "tshark",
            "-n",
            "-r",
            str(tmp_path / "full.pcap"),
            "-T",
            "fields",
            "-E",
            "separator=|",
            *(
                x
                for f in ("tcp.stream", "tcp.srcport", "tcp.flags", "tcp.seq_raw", "tcp.seq", "tcp.len", "tcp.ack")
                for x in ("-e", f)
            ),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    left_out: list[tuple[tuple[str, str], int, int]] = []  # (stream, sender port), relative seq, sequence length
    acked: dict[tuple[str, str], int] = {}  # (stream, sender port) -> highest ACK without RST from the other side
    ports: dict[str, set[str]] = {}
    rows = [line.split("|") for line in out.splitlines() if line]
    for row in rows:
        ports.setdefault(row[0], set()).add(row[1])
    for stream, port, flags, raw, seq, length, ack in rows:
        bits = int(flags, 16)
        if int(length) > 0 and (int(raw) >> 8) & 7 == 3:
            left_out.append(((stream, port), int(seq), int(length) + (bits & 1)))
        if bits & 0x10 and not bits & 0x04:
            [peer] = ports[stream] - {port}
            acked[stream, peer] = max(acked.get((stream, peer), 0), int(ack))
    assert left_out
    want = sum(min(size, max(0, acked.get(side, 0) - seq)) for side, seq, size in left_out)
    assert sum(r[2][3] for r in lossy) == want
    assert all(r[2][0] == 0 for r in lossy)  # nothing was sent twice
    _compare_with_tshark(tmp_path / "lossy.pcap", exact=True)
