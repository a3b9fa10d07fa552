"""The TCP state machine: teardown label, Zeek conn_state/history, sides, timing, port reuse, memory."""

from __future__ import annotations

import ipaddress

import pytest

from diagnose.probes.capture.tcp import Connection, Tracker, build_connection
from tests.probes.capture import synth


def _key(seg: synth.Segment) -> bytes:
    return (
        ipaddress.ip_address(seg.src).packed
        + ipaddress.ip_address(seg.dst).packed
        + seg.sport.to_bytes(2, "big")
        + seg.dport.to_bytes(2, "big")
    )


def _run(segments: list[synth.Segment], bad_from: str | None = None) -> list[Connection]:
    out: list[Connection] = []
    tracker = Tracker(lambda c: out.append(build_connection(c, "t")))
    tracker.start_source("t")
    for i, s in enumerate(segments, 1):
        tracker.packet(i, s.ts, _key(s), None, s.flags, s.win, s.payload, s.seq, s.ack, s.src == bad_from)
    tracker.finish_all()
    return out


# scenario -> (teardown, conn_state, history, first FIN by, first RST by)
EXPECTED = {
    "graceful-client-first": ("graceful", "SF", "ShADadFf", "originator", "none"),
    "graceful-server-first": ("graceful", "SF", "ShADadfF", "responder", "none"),
    "dirty-close": ("dirty-close", "RSTO", "ShADadfR", "responder", "originator"),
    "reset-after-own-fin": ("reset-after-own-fin", "RSTO", "ShADadFR", "originator", "originator"),
    "server-reset": ("reset", "RSTR", "ShADar", "none", "responder"),
    "client-abort": ("reset", "RSTO", "ShADadR", "none", "originator"),
    "refused": ("refused", "REJ", "Sr", "none", "responder"),
    "unanswered": ("unanswered", "S0", "S", "none", "none"),
    "half-closed": ("half-closed", "S2", "ShADadF", "originator", "none"),
    "open": ("open", "S1", "ShADad", "none", "none"),
    "midstream-graceful": ("graceful", "SF", "AdfFa", "responder", "none"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_scenario_gets_its_label_state_and_history(name: str) -> None:
    sc = synth.SCENARIOS[name]
    [conn] = _run(synth.script_segments(sc, ("10.1.0.5", 40000), ("10.0.0.10", 443), 100.0))
    assert (conn.teardown, conn.conn_state, conn.history, conn.first_fin_by, conn.first_reset_by) == EXPECTED[name]
    assert (conn.originator, conn.responder) == ("10.1.0.5:40000", "10.0.0.10:443")
    assert (sc.teardown, sc.first_fin_by, sc.first_reset_by) == (conn.teardown, conn.first_fin_by, conn.first_reset_by)


def test_dirty_close_times_and_zero_window() -> None:
    segs = synth.script_segments(
        synth.SCENARIOS["dirty-close"], ("10.1.0.5", 40000), ("10.0.0.10", 443), 100.0, gap=0.25
    )
    [conn] = _run(segs)
    assert conn.fin_to_rst_seconds == pytest.approx(0.5)
    assert conn.rst_zero_window is True
    assert (conn.first_frame, conn.last_frame, conn.fin_frame, conn.rst_frame) == (1, 10, 8, 10)
    assert (conn.packets_orig, conn.packets_resp) == (6, 4)


def test_capture_starting_at_the_syn_ack_is_flipped() -> None:
    segs = synth.script_segments(
        synth.SCENARIOS["graceful-client-first"], ("10.1.0.5", 40000), ("10.0.0.10", 443), 1.0
    )[1:]
    [conn] = _run(segs)
    assert conn.originator == "10.1.0.5:40000"
    assert conn.history.startswith("^h")
    assert conn.first_fin_by == "originator"


def test_midstream_from_the_server_port_is_flipped_by_port() -> None:
    segs = synth.script_segments(synth.SCENARIOS["dirty-close"], ("10.1.0.5", 40000), ("10.0.0.10", 443), 1.0)[7:]
    [conn] = _run(segs)  # starts with the server's FIN
    assert (conn.originator, conn.responder) == ("10.1.0.5:40000", "10.0.0.10:443")
    assert (conn.teardown, conn.conn_state, conn.history) == ("dirty-close", "RSTO", "^fAR")


def test_port_reuse_after_close_starts_a_new_connection() -> None:
    a = synth.script_segments(synth.SCENARIOS["dirty-close"], ("10.1.0.5", 40000), ("10.0.0.10", 443), 1.0, conn=1)
    b = synth.script_segments(
        synth.SCENARIOS["graceful-client-first"], ("10.1.0.5", 40000), ("10.0.0.10", 443), 2.0, conn=2
    )
    conns = sorted(_run(a + b), key=lambda c: c.first_frame)
    assert [c.teardown for c in conns] == ["dirty-close", "graceful"]
    assert conns[1].first_frame == len(a) + 1


def test_bad_checksums_are_counted_and_marked_not_faults() -> None:
    segs = synth.script_segments(synth.SCENARIOS["dirty-close"], ("10.1.0.5", 40000), ("10.0.0.10", 443), 1.0)
    [conn] = _run(segs, bad_from="10.1.0.5")
    assert conn.bad_checksums == 6
    assert conn.teardown == "dirty-close"
    assert conn.history.startswith("CS")


def test_closed_connections_are_dropped_while_reading() -> None:
    """Memory follows live connections: closed ones leave the table once the capture moves on."""
    finished: list[list] = []
    tracker = Tracker(finished.append)
    tracker.start_source("t")
    segments = synth.conversations(3000, mix=["graceful-client-first", "dirty-close"], concurrency=20, extra_data=0)
    peak = 0
    for i, s in enumerate(segments, 1):
        # 1 s per packet: the capture moves past LINGER quickly
        tracker.packet(i, float(i), _key(s), None, s.flags, s.win, s.payload, s.seq, s.ack, False)
        if i % 500 == 0:
            tracker.sweep(float(i))
            peak = max(peak, len(tracker.conns))
    assert len(finished) > 2500
    assert peak < 2 * 200  # two keys per connection; 20 live + those within LINGER
