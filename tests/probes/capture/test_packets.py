"""The packets of cited connections (`capture.packets`, for the reports' ladders): a real loopback
conversation captured by tcpdump, checked against tshark where it is installed; the same facts from
the C accelerator, the pure-Python readers and a split run; the bounds (first and last packets, the
packets around the first retransmission or gap)."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import diagnose.probes.capture.formats as formats
from diagnose.kinds import fact_kinds
from diagnose.probes import ProbeContext
from diagnose.probes.capture import probe as capture_probe
from diagnose.probes.capture.packets import AFTER_LOSS, BEFORE_LOSS, HEAD, TAIL
from tests.probes.capture import synth
from tests.probes.capture.test_match import fw_row, write_w3c
from tests.probes.loopback import Tcpdump, cannot_capture, free_port

EXCHANGES = 30  # request/answer pairs before the server closes: well over HEAD + TAIL packets


def _serve(port: int, ready: threading.Event) -> None:
    """The published server: answers each line, then closes first (FIN) and waits for the reset."""
    with socket.socket() as ls:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", port))
        ls.listen()
        ready.set()
        conn, _ = ls.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(EXCHANGES):
                conn.recv(100)
                conn.sendall(b"ok\n")
            conn.shutdown(socket.SHUT_WR)
            time.sleep(0.5)


def _dirty_close(tmp_path: Path) -> tuple[Path, int, int, float]:
    """A long conversation on loopback ended by TMG's dirty close (the server's FIN, then the client's
    RST after SO_LINGER 0), captured by tcpdump: (capture, client port, server port, time of the RST)."""
    port = free_port()
    cap = tmp_path / "lo.pcap"
    dump = Tcpdump(cap, f"tcp port {port}")
    try:
        ready = threading.Event()
        server = threading.Thread(target=_serve, args=(port, ready))
        server.start()
        ready.wait(5)
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            local = c.getsockname()[1]
            for _ in range(EXCHANGES):
                c.sendall(b"q\n")
                c.recv(100)
            while c.recv(100):  # until the server's FIN
                pass
            time.sleep(0.2)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        closed = time.time()
        server.join(10)
    finally:
        dump.stop()
    return cap, local, port, closed


def _facts(spec: dict[str, Any]) -> list[Any]:
    result = capture_probe(ProbeContext(), spec)
    fact_kinds().check(result.facts, "test")
    return [(f.kind, f.subject, dict(f.attrs)) for f in result.facts]


def _ladders(facts: list[Any]) -> list[dict[str, Any]]:
    return [attrs for kind, _subject, attrs in facts if kind == "capture.packets"]


@pytest.fixture(scope="module")
def loopback(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int, int]:
    why = cannot_capture()
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("ladder")
    cap, client, server, closed = _dirty_close(tmp)
    log = write_w3c(tmp / "ISALOG_FWS_000.w3c", [fw_row(int(closed), f"127.0.0.1:{client}", f"127.0.0.1:{server}")])
    return cap, log, client, server


def test_a_real_dirty_close_is_kept_with_its_first_and_last_packets(loopback: tuple[Path, Path, int, int]) -> None:
    cap, log, client, server = loopback
    facts = _facts({"paths": [str(cap)], "log_paths": [str(log)], "tmg_addresses": ["127.0.0.1"]})
    (ladder,) = _ladders(facts)
    assert (ladder["originator"], ladder["responder"]) == (f"127.0.0.1:{client}", f"127.0.0.1:{server}")
    assert (ladder["teardown"], ladder["originator_role"], ladder["responder_role"]) == ("dirty-close", "tmg", "server")
    assert ladder["chosen_for"] == "matched to Status 64 (dirty close by TMG)"
    assert ladder["status64"] == (f"{log}:5",)
    rows = [line.split() for line in ladder["frames"]]
    assert len(rows) == HEAD + TAIL and ladder["packets"] > 2 * EXCHANGES + 6
    assert ladder["omitted"] == ladder["packets"] - HEAD - TAIL
    assert ladder["cut_after"] == (rows[HEAD - 1][0],)  # the packets between the head and the tail left out
    # the handshake, from the first packet on
    assert [(r[2], r[3], r[4]) for r in rows[:3]] == [
        (">", "SYN", "-"),
        ("<", "SYN,ACK", rows[1][4]),
        (">", "ACK", rows[2][4]),
    ]
    assert rows[0][1] == "0.000000" and [int(r[0]) for r in rows] == sorted(int(r[0]) for r in rows)
    # the end: the server's FIN, then TMG's RST, and nothing after it
    fin = next(i for i, r in enumerate(rows) if r[2] == "<" and "FIN" in r[3].split(","))
    assert rows[-1][2] == ">" and "RST" in rows[-1][3].split(",") and fin < len(rows) - 1
    assert float(rows[-1][1]) - float(rows[fin][1]) >= 0.2
    assert int(rows[-1][0]) == ladder["last_frame"]
    if shutil.which("tshark"):  # the oracle: each kept frame as tshark decodes it
        out = subprocess.run(
            [
                "tshark",
                "-r",
                str(cap),
                "-T",
                "fields",
                "-e",
                "frame.number",
                "-e",
                "tcp.flags",
                "-e",
                "tcp.window_size_value",
                "-e",
                "tcp.len",
                "-e",
                "tcp.seq_raw",
                "-e",
                "tcp.ack_raw",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        shark = {int(line.split("\t")[0]): line.split("\t") for line in out.splitlines()}
        for frame, _t, _way, flags, win, plen, seq, ack, *_ in rows:
            _n, hexflags, swin, slen, sseq, sack = shark[int(frame)]
            assert int(hexflags, 16) & 0x17 == sum(
                bit for bit, name in ((1, "FIN"), (2, "SYN"), (4, "RST"), (16, "ACK")) if name in flags.split(",")
            )
            assert (plen, seq) == (slen, sseq) and (win == "-" or win == swin)
            assert "ACK" not in flags.split(",") or ack == sack


def test_the_same_packets_from_the_accelerator_pure_python_and_a_split_run(
    loopback: tuple[Path, Path, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    cap, log, _client, _server = loopback
    spec = {"paths": [str(cap)], "log_paths": [str(log)], "tmg_addresses": ["127.0.0.1"]}
    accelerated = _facts(spec)
    split = _facts({**spec, "jobs": 2})
    monkeypatch.setattr(formats, "_fastcap", None)
    pure = _facts(spec)
    assert _ladders(accelerated) and accelerated == pure == split


def test_packets_around_the_first_retransmission_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    segs, _truth = synth.lossy(40, seed=3, events=0.3)
    cap = synth.write_file(tmp_path / "lossy.pcap", "pcap", synth.records_for(sorted(segs, key=lambda s: s.ts)))
    spec = {"paths": [str(cap)], "samples": 1}
    facts = _facts(spec)
    conns = {(a["first_frame"]): a for kind, _s, a in facts if kind == "capture.connection"}
    lossy = [a for a in _ladders(facts) if conns[a["first_frame"]].get("first_loss_frame")]
    assert any(a["omitted"] for a in lossy)  # one long enough to be cut
    for ladder in lossy:
        kept = [int(line.split()[0]) for line in ladder["frames"]]
        loss = conns[ladder["first_frame"]]["first_loss_frame"]
        assert len(kept) <= HEAD + BEFORE_LOSS + AFTER_LOSS + TAIL
        assert loss in kept
        assert ladder["omitted"] == ladder["packets"] - len(kept)
        if ladder["omitted"]:  # the head, a cut, the packets before the loss, the loss and after
            assert ladder["cut_after"][0] == str(kept[HEAD - 1]) and kept.index(loss) == HEAD + BEFORE_LOSS
    monkeypatch.setattr(formats, "_fastcap", None)
    assert _facts(spec) == facts


def test_no_packets_without_connections(tmp_path: Path) -> None:
    cap = synth.write_file(tmp_path / "empty.pcap", "pcap", [])
    assert not _ladders(_facts({"paths": [str(cap)]}))
