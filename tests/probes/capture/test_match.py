"""Status 64 log entries matched to captured connections (`capture.status64_match`).

Logs are written in the real formats (W3C Firewall, ISA/TMG text format, SQL export CSV, W3C Web
Proxy); captures come from our synthetic writer (pcap, NetMon 2.1, NetMon text export) and from
tcpdump on loopback with real sockets.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from diagnose.kinds import fact_kinds
from diagnose.probes import ProbeContext
from diagnose.probes.capture import probe as capture_probe
from diagnose.probes.capture.match import _tod_delta
from diagnose.probes.logs.entries import WEB_PROXY, status64_entries
from diagnose.probes.logs.scan import Site
from tests.conftest import REPO, run_cli
from tests.probes.capture import synth
from tests.probes.loopback import Tcpdump, cannot_capture, free_port, serve_once
from tests.servers import LOOPBACKS, host_port, requires_ipv6

TMG, CAS = "10.1.4.98", "10.1.5.11"
S = 1_714_816_800  # 2024-05-04 10:00:00 UTC
FW_FIELDS = [
    "computer",
    "date",
    "time",
    "IP protocol",
    "source",
    "destination",
    "original client IP",
    "source network",
    "destination network",
    "action",
    "status",
    "rule",
    "application protocol",
    "bytes sent",
    "bytes received",
    "connection time",
    "source name",
    "destination name",
    "username",
    "agent",
    "session ID",
    "connection ID",
]


def utc(epoch: float) -> time.struct_time:
    return time.gmtime(epoch)


def fw_row(
    when: float,
    src: str,
    dst: str,
    status: str = "0x80070040",
    action: str = "Failed Connection Attempt",
    srcnet: str = "Local Host",
    dstnet: str = "Internal",
) -> str:
    t = utc(when)
    values = {
        "computer": "TMG01",
        "date": time.strftime("%Y-%m-%d", t),
        "time": time.strftime("%H:%M:%S", t),
        "IP protocol": "TCP",
        "source": src,
        "destination": dst,
        "original client IP": src.rsplit(":", 1)[0],
        "source network": srcnet,
        "destination network": dstnet,
        "action": action,
        "status": status,
        "rule": "Outlook Anywhere",
        "application protocol": "HTTPS",
        "bytes sent": "100",
        "bytes received": "2000",
        "connection time": "1500",
    }
    return "\t".join(values.get(f, "-") for f in FW_FIELDS)


def write_w3c(path: Path, rows: Iterable[str]) -> Path:
    path.write_text(
        "#Software: Microsoft Forefront Threat Management Gateway 2010\n#Version: 1.0\n"
        "#Date: 2024-05-04 09:00:00\n#Fields: " + "\t".join(FW_FIELDS) + "\n" + "".join(r + "\n" for r in rows),
        encoding="utf-8",
    )
    return path


def isa_text_row(local: time.struct_time, src: str, dst: str, status: str = "0x80070040") -> str:
    """The ISA Server 2006 text format (31 fields, ", "-separated, local time, no GMT field)."""
    values = [
        "ISA01",
        time.strftime("%m/%d/%Y", local),
        time.strftime("%H:%M:%S", local),
        "TCP",
        src,
        dst,
        src.rsplit(":", 1)[0],
        "Local Host",
        "Internal",
        "Failed",
        status,
        "Outlook Anywhere",
        "HTTPS",
        "-",
        "100",
        "0",
        "2000",
        "0",
        "1500",
        "0",
        "-",
        "-",
        "-",
        "cas01.contoso.local",
        "-",
        "-",
        "0",
        "17202",
    ]
    return ", ".join(values + ["-"] * (31 - len(values)))


def segments(
    scenario: str, client: tuple[str, int], server: tuple[str, int], start: float, conn: int = 0
) -> list[synth.Segment]:
    return synth.script_segments(synth.SCENARIOS[scenario], client, server, start, conn, gap=0.01)


def write_pcap(path: Path, segs: Iterable[synth.Segment]) -> Path:
    return synth.write_file(path, "pcap", synth.records_for(sorted(segs, key=lambda s: s.ts)))


def match(captures: list[Path], logs: list[Path], **spec: Any) -> tuple[dict[str, Any], dict[str, str]]:
    spec = {"paths": [str(p) for p in captures], "log_paths": [str(p) for p in logs], "tmg_addresses": [TMG], **spec}
    result = capture_probe(ProbeContext(), spec)
    fact_kinds().check(result.facts, "test")
    found = [f for f in result.facts if f.kind == "capture.status64_match"]
    assert len(found) == 1, result.reason
    return dict(found[0].attrs), dict(result.excerpts)


# -- the 4-tuple ----------------------------------------------------------------------------------------
def test_four_tuple_matches_in_a_synthetic_pcap(tmp_path: Path) -> None:
    dirty = segments("dirty-close", (TMG, 31024), (CAS, 443), S + 0.5, 0)
    reset = segments("server-reset", (TMG, 31025), (CAS, 443), S + 5.5, 1)
    graceful = segments("graceful-server-first", (TMG, 31026), (CAS, 443), S + 20.5, 2)
    cap = write_pcap(tmp_path / "tmg.pcap", dirty + reset + graceful)
    log = write_w3c(
        tmp_path / "ISALOG_20240504_FWS_000.w3c",
        [
            fw_row(S + 1, f"{TMG}:31024", f"{CAS}:443"),  # line 5: the dirty close
            fw_row(S + 6, f"{CAS}:443", f"{TMG}:31025", srcnet="Internal", dstnet="Local Host"),  # reversed
            fw_row(S + 21, f"{TMG}:31026", f"{CAS}:443"),  # graceful: matched, other
            fw_row(S + 10, f"{TMG}:39999", f"{CAS}:443"),  # line 8: no such connection while the capture ran
            fw_row(S + 3600, f"{TMG}:31024", f"{CAS}:443"),  # an hour later: outside the capture
            fw_row(S + 1, f"{TMG}:31024", f"{CAS}:443", status="0x0", action="Initiated Connection"),  # not Status 64
        ],
    )
    attrs, excerpts = match([cap], [log])
    assert (attrs["entries"], attrs["matched"], attrs["unmatched"], attrs["outside_capture"]) == (4, 3, 1, 1)
    assert attrs["matched_dirty_close_by_tmg"] == 1 and attrs["matched_reset_by_server"] == 1
    assert attrs["matched_other"] == 1 and attrs["share_dirty_close_by_tmg"] == 0.25
    assert (attrs["match_basis"], attrs["time_basis"], attrs["tolerance_seconds"]) == ("4-tuple", "absolute", 2.0)
    cited = "\n".join(attrs["samples"])
    assert f"{log}:5 ({TMG}:31024 > {CAS}:443 at 2024-05-04T10:00:01Z) <-> tmg.pcap frames 1-" in cited
    assert "(dirty close by TMG)" in cited and "(reset by the server)" in cited
    assert f"{log}:8 ({TMG}:39999 > {CAS}:443 at 2024-05-04T10:00:10Z) <-> no connection" in cited
    assert excerpts[f"{log}:5"].startswith("TMG01\t2024-05-04\t10:00:01\tTCP\t10.1.4.98:31024")


def test_ipv6_and_port_reuse_pick_the_connection_of_the_entry_time(tmp_path: Path) -> None:
    tmg6, cas6 = "fd00::4:98", "fd00::5:11"
    first = segments("server-reset", (tmg6, 40000), (cas6, 443), S + 0.5, 0)
    second = segments("dirty-close", (tmg6, 40000), (cas6, 443), S + 30.5, 1)  # the same 4-tuple again
    cap = write_pcap(tmp_path / "v6.pcap", first + second)
    log = write_w3c(tmp_path / "fws.w3c", [fw_row(S + 31, f"[{tmg6}]:40000", f"[{cas6}]:443")])
    attrs, _ = match([cap], [log], tmg_addresses=[tmg6])
    assert (attrs["matched_dirty_close_by_tmg"], attrs["matched_reset_by_server"], attrs["entries"]) == (1, 0, 1)


# -- the tolerance ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "offset,tolerance,matched",
    [
        (2, 2.0, True),  # 1.45 s after the last packet (S+0.55)
        (3, 2.0, False),  # 2.45 s after it
        (3, 3.0, True),
        (-1, 2.0, True),  # 1.5 s before the first packet (S+0.5)
        (-2, 2.0, False),  # 2.5 s before it
        (-2, 2.5, True),  # exactly on the edge
    ],
)
def test_tolerance_edge(tmp_path: Path, offset: int, tolerance: float, matched: bool) -> None:
    dirty = segments("dirty-close", (TMG, 31024), (CAS, 443), S + 0.5)
    assert round(dirty[-1].ts - dirty[0].ts, 3) < 0.1
    other = segments("graceful-client-first", ("10.1.4.99", 5000), (CAS, 80), S - 20.0, 1)  # widens the span
    later = segments("graceful-client-first", ("10.1.4.99", 5001), (CAS, 80), S + 20.0, 2)
    cap = write_pcap(tmp_path / "t.pcap", dirty + other + later)
    log = write_w3c(tmp_path / "fws.w3c", [fw_row(S + offset, f"{TMG}:31024", f"{CAS}:443")])
    attrs, _ = match([cap], [log], match_tolerance=tolerance)
    assert attrs["entries"] == 1
    assert attrs["matched_dirty_close_by_tmg"] == (1 if matched else 0)
    assert attrs["unmatched"] == (0 if matched else 1)


# -- NetMon: text export (ports, time of day) and 2.1 (local clock) -----------------------------------
def write_text(path: Path, segs: list[synth.Segment], shift: float = 0.0, addresses: bool = False) -> Path:
    moved = [
        synth.Segment(s.ts + shift, s.src, s.dst, s.sport, s.dport, s.flags, s.seq, s.ack, s.win, s.payload, s.conn)
        for s in segs
    ]
    with open(path, "w", encoding="utf-8") as fh:
        synth.write_netmon_text(fh, moved, bad_checksum_from=TMG, tabs=True, addresses=addresses)
    return path


def test_port_only_match_on_a_netmon_text_export(tmp_path: Path) -> None:
    segs = segments("dirty-close", (TMG, 31024), (CAS, 443), S + 0.5, 0) + segments(
        "server-reset", (TMG, 31025), (CAS, 443), S + 3.5, 1
    )
    cap = write_text(tmp_path / "trace.txt", sorted(segs, key=lambda s: s.ts))
    log = write_w3c(
        tmp_path / "fws.w3c",
        [
            fw_row(S + 1, f"{TMG}:31024", f"{CAS}:443"),
            fw_row(S + 4, f"{TMG}:31025", f"{CAS}:443"),
            fw_row(S + 1, f"{TMG}:31030", f"{CAS}:443"),  # no such ports in the export
            fw_row(S + 600, f"{TMG}:31024", f"{CAS}:443"),  # the same ports ten minutes later: another connection
        ],
    )
    attrs, excerpts = match([cap], [log])
    assert (attrs["match_basis"], attrs["time_basis"]) == ("ports", "time of day")
    assert (attrs["entries"], attrs["matched_dirty_close_by_tmg"], attrs["matched_reset_by_server"]) == (3, 1, 1)
    assert (attrs["unmatched"], attrs["outside_capture"]) == (1, 1)
    assert any("<-> trace.txt frames 1-" in s and "dirty close by TMG" in s for s in attrs["samples"])
    assert any(k.startswith("trace.txt:") and "Flags=" in v for k, v in excerpts.items())


def test_text_export_in_local_time_is_read_in_the_given_zone(tmp_path: Path) -> None:
    segs = segments("dirty-close", (TMG, 31024), (CAS, 443), S + 0.5)
    cap = write_text(tmp_path / "trace.txt", segs, shift=2 * 3600)  # the capturing host's clock: CEST
    log = write_w3c(tmp_path / "fws.w3c", [fw_row(S + 1, f"{TMG}:31024", f"{CAS}:443")])
    attrs, _ = match([cap], [log], tz="Europe/Berlin")
    assert (attrs["time_basis"], attrs["matched_dirty_close_by_tmg"], attrs["entries"]) == ("time of day", 1, 1)
    # without the zone the time of day does not fit: matched by ports alone, and said so
    attrs, _ = match([cap], [log])
    assert (attrs["time_basis"], attrs["match_basis"], attrs["matched_dirty_close_by_tmg"]) == ("none", "ports", 1)


def test_text_export_with_address_columns_matches_the_four_tuple(tmp_path: Path) -> None:
    segs = segments("dirty-close", (TMG, 31024), (CAS, 443), S + 0.5)
    cap = write_text(tmp_path / "trace.txt", segs, addresses=True)
    log = write_w3c(
        tmp_path / "fws.w3c",
        [fw_row(S + 1, f"{TMG}:31024", f"{CAS}:443"), fw_row(S + 1, "10.1.4.97:31024", f"{CAS}:443")],
    )
    attrs, _ = match([cap], [log])
    assert (attrs["match_basis"], attrs["matched_dirty_close_by_tmg"], attrs["unmatched"]) == ("4-tuple", 1, 1)


def test_netmon_21_local_clock_is_read_in_the_given_zone(tmp_path: Path) -> None:
    segs = segments("dirty-close", (TMG, 31024), (CAS, 443), S + 0.5 + 2 * 3600)  # local clock, CEST
    cap = synth.write_file(tmp_path / "t.cap", "netmon2.1", synth.records_for(segs))
    log = write_w3c(tmp_path / "fws.w3c", [fw_row(S + 1, f"{TMG}:31024", f"{CAS}:443")])
    attrs, _ = match([cap], [log], tz="Europe/Berlin")
    assert (attrs["time_basis"], attrs["matched_dirty_close_by_tmg"]) == ("local clock", 1)
    attrs, _ = match([cap], [log])
    assert (attrs["matched"], attrs["outside_capture"]) == (0, 1)


def test_time_of_day_wraps_at_midnight() -> None:
    assert _tod_delta(10.0, 86390.0) == 20.0 and _tod_delta(86390.0, 10.0) == -20.0


# -- log formats --------------------------------------------------------------------------------------
def test_entries_in_several_log_formats(tmp_path: Path) -> None:
    segs = (
        segments("dirty-close", (TMG, 31024), (CAS, 443), S + 0.5, 0)
        + segments("dirty-close", (TMG, 31025), (CAS, 443), S + 2.5, 1)
        + segments("dirty-close", (TMG, 31026), (CAS, 443), S + 4.5, 2)
    )
    cap = write_pcap(tmp_path / "t.pcap", segs)
    w3c = write_w3c(tmp_path / "ISALOG_20240504_FWS_000.w3c", [fw_row(S + 1, f"{TMG}:31024", f"{CAS}:443")])
    local = time.gmtime(S + 3 + 2 * 3600)  # the text format logs local time (CEST)
    iis = tmp_path / "ISALOG_20240504_FWS_001.iis"
    iis.write_text(isa_text_row(local, f"{TMG}:31025", f"{CAS}:443") + "\n", encoding="utf-8")
    csv = tmp_path / "FirewallLog.csv"
    csv.write_text(
        "servername,logTime,protocol,SourceIP,SourcePort,DestinationIP,DestinationPort,OriginalClientIP,"
        "SourceNetwork,DestinationNetwork,Action,resultcode,rule,ApplicationProtocol,GmtLogTime\n"
        "TMG01,2024-05-04 12:00:05.000,TCP,0A010462-FFFF-0000-0000-000000000000,31026,"
        "0A01050B-FFFF-0000-0000-000000000000,443,0A010462-FFFF-0000-0000-000000000000,Local Host,Internal,10,"
        "-2147024832,Outlook Anywhere,HTTPS,2024-05-04 10:00:05.000\n",
        encoding="utf-8",
    )
    web = tmp_path / "ISALOG_20240504_WEB_000.w3c"
    web.write_text(
        "#Software: Microsoft Forefront Threat Management Gateway 2010\n#Version: 1.0\n"
        "#Fields: c-ip\tdate\ttime\tr-ip\tr-port\tcs-transport\tsc-status\taction\n"
        "198.51.100.7\t2024-05-04\t10:00:01\t10.1.5.11\t443\tTCP\t64\tFailed\n",
        encoding="utf-8",
    )
    found = status64_entries([str(p) for p in (w3c, iis, csv, web)], Site(tz="Europe/Berlin"))
    assert sorted((e.src_port, e.time - S) for e in found.entries) == [(31024, 1.0), (31025, 3.0), (31026, 5.0)]
    assert {e.leg for e in found.entries} == {"server"} and found.unusable == {WEB_PROXY: 1}
    from_iis = [e for e in found.entries if e.src_port == 31025]
    assert found.lines(from_iis) == {f"{iis}:1": iis.read_text().strip()}
    attrs, excerpts = match([cap], [w3c, iis, csv, web], tz="Europe/Berlin")
    assert (attrs["entries"], attrs["matched_dirty_close_by_tmg"], attrs["share_dirty_close_by_tmg"]) == (3, 3, 1.0)
    assert (attrs["status64_logged"], attrs["unusable"]) == (4, 1)
    assert list(attrs["unusable_reasons"]) == [f"1 {WEB_PROXY}"]
    assert {f"{w3c}:5", f"{iis}:1", f"{csv}:2"} <= set(excerpts)


def test_entries_over_the_limit_are_counted_not_kept(tmp_path: Path) -> None:
    cap = write_pcap(tmp_path / "t.pcap", segments("dirty-close", (TMG, 31024), (CAS, 443), S + 0.5))
    log = write_w3c(tmp_path / "fws.w3c", [fw_row(S + 1, f"{TMG}:{31024 + k}", f"{CAS}:443") for k in range(5)])
    result = capture_probe(ProbeContext(), {"paths": [str(cap)], "log_paths": [str(log)], "match_limit": 2})
    attrs = next(f.attrs for f in result.facts if f.kind == "capture.status64_match")
    assert (attrs["capped"], attrs["entries"], attrs["matched"]) == (3, 2, 1)
    assert "only the first 2 entries kept, 3 more not matched" in result.reason


def test_no_match_fact_without_logs(tmp_path: Path) -> None:
    cap = write_pcap(tmp_path / "t.pcap", segments("dirty-close", (TMG, 31024), (CAS, 443), S + 0.5))
    result = capture_probe(ProbeContext(), {"paths": [str(cap)]})
    assert not [f for f in result.facts if f.kind == "capture.status64_match"]


# -- the original case and the whole run ----------------------------------------------------------------
def test_seed_example_matches_the_logged_entry_to_frames_1348_1410() -> None:
    seed = REPO / "examples" / "seed"
    attrs, excerpts = match([seed / "netmon-trace.txt"], [seed / "ISALOG_20110504_FWS_000.w3c"])
    assert (attrs["entries"], attrs["matched_dirty_close_by_tmg"], attrs["share_dirty_close_by_tmg"]) == (1, 1, 1.0)
    assert (attrs["match_basis"], attrs["time_basis"]) == ("ports", "time of day")
    assert attrs["samples"][0].endswith(
        "ISALOG_20110504_FWS_000.w3c:7 (10.1.4.98:31024 > 10.1.5.11:443 at 2011-05-04T11:34:15Z) "
        "<-> netmon-trace.txt frames 1348-1410 (dirty close by TMG)"
    )
    assert excerpts["netmon-trace.txt:3"].startswith("1410\t11:34:15.8416240")


def test_seed_run_cites_the_match() -> None:
    proc = run_cli("run", "--example", "seed", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    top = doc["causes"][0]
    assert doc["verdict"] == "benign" and top["id"] == "dirty-close-by-design"
    rule = next(r for r in top["rules"] if r["id"] == "status64-matches-dirty-close")
    assert "netmon-trace.txt frames 1348-1410 (dirty close by TMG)" in json.dumps(rule)


def test_run_with_capture_and_log_options(tmp_path: Path) -> None:
    segs = segments("server-reset", (TMG, 31025), (CAS, 443), S + 0.5)
    cap = write_pcap(tmp_path / "t.pcap", segs)
    log = write_w3c(tmp_path / "fws.w3c", [fw_row(S + 1, f"{TMG}:31025", f"{CAS}:443")])
    proc = run_cli("run", "--capture", str(cap), "--log", str(log), "--tmg", TMG, "--no-input", "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    attrs = next(f["attrs"] for f in doc["facts"] if f["kind"] == "capture.status64_match")
    assert attrs["matched_reset_by_server"] == 1 and attrs["share_reset_by_server"] == 1.0
    assert "status64-matches-server-resets" in json.dumps(doc)


# -- loopback: real sockets, captured by tcpdump ---------------------------------------------------------
def _connect(port: int, behaviour: str, host: str = "127.0.0.1") -> tuple[int, float]:
    """The client side, playing TMG; returns its port and the time it closed."""
    with socket.create_connection((host, port)) as c:
        local = c.getsockname()[1]
        c.sendall(b"GET / HTTP/1.1\r\nHost: cas01\r\n\r\n")
        if behaviour == "server-reset":
            time.sleep(0.2)
            try:
                while c.recv(1000):
                    pass
            except OSError:
                pass
            return local, time.time()
        if behaviour == "graceful":  # the answer, then FIN first; the server closes after it
            data = b""
            while b"ok" not in data:
                data += c.recv(1000)
            c.shutdown(socket.SHUT_WR)
            while c.recv(1000):
                pass
            return local, time.time()
        while c.recv(1000):
            pass
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return local, time.time()


def _loopback_connections(
    cap: Path, host: str, behaviours: Iterable[str]
) -> tuple[dict[str, int], dict[str, tuple[int, float]]]:
    """Real connections on `host`, one per behaviour, captured by tcpdump into `cap`: (server ports, clients)."""
    ports = {behaviour: free_port(host) for behaviour in behaviours}
    tcpdump = Tcpdump(cap, " or ".join(f"tcp port {p}" for p in ports.values()))
    clients: dict[str, tuple[int, float]] = {}
    try:
        for behaviour, port in ports.items():
            if behaviour == "refused":
                with pytest.raises(ConnectionRefusedError), socket.create_connection((host, port)):
                    pass
                continue
            ready = threading.Event()
            server = "reset-mid-transfer" if behaviour == "server-reset" else behaviour
            t = threading.Thread(target=serve_once, args=(port, server, ready, host))
            t.start()
            ready.wait(5)
            clients[behaviour] = _connect(port, behaviour, host)
            t.join(10)
    finally:
        tcpdump.stop()
    return ports, clients


@pytest.mark.parametrize("host", LOOPBACKS)
def test_loopback_capture_matches_real_dirty_close_and_server_reset(tmp_path: Path, host: str) -> None:
    why = cannot_capture()
    if why:
        pytest.skip(why)
    cap = tmp_path / "lo.pcap"
    ports, clients = _loopback_connections(cap, host, ("dirty-close", "server-reset"))
    rows = [fw_row(int(clients[b][1]), host_port(host, clients[b][0]), host_port(host, ports[b])) for b in ports]
    log = write_w3c(tmp_path / "fws.w3c", rows)
    attrs, _ = match([cap], [log], tmg_addresses=[host])
    assert (attrs["entries"], attrs["matched"]) == (2, 2)
    assert (attrs["matched_dirty_close_by_tmg"], attrs["matched_reset_by_server"]) == (1, 1)
    assert attrs["share_dirty_close_by_tmg"] == 0.5 and attrs["time_basis"] == "absolute"


@requires_ipv6
def test_ipv6_loopback_capture_end_to_end_through_the_cli(tmp_path: Path) -> None:
    """Real TCP connections over ::1 (TMG's dirty close, a server reset, a graceful close, a refused
    connect), captured by tcpdump on lo and read by `diagnose probe capture --tmg ::1 --log ...`: each
    connection gets its teardown label, and the Status 64 entries TMG logged for them, with IPv6 4-tuples
    written `[ADDR]:PORT`, are matched to them."""
    why = cannot_capture()
    if why:
        pytest.skip(why)
    cap = tmp_path / "lo6.pcap"
    ports, clients = _loopback_connections(cap, "::1", ("dirty-close", "server-reset", "graceful", "refused"))
    log = write_w3c(
        tmp_path / "ISALOG_FWS_000.w3c",
        [fw_row(int(clients[b][1]), f"[::1]:{clients[b][0]}", f"[::1]:{ports[b]}") for b in clients],
    )
    proc = run_cli("probe", "capture", str(cap), "--tmg", "::1", "--log", str(log), "--connections", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)["facts"]
    conns = {f["attrs"]["responder"]: f["attrs"] for f in facts if f["kind"] == "capture.connection"}
    assert set(conns) == {f"[::1]:{p}" for p in ports.values()}
    dirty, reset = conns[f"[::1]:{ports['dirty-close']}"], conns[f"[::1]:{ports['server-reset']}"]
    assert (dirty["teardown"], dirty["conn_state"], dirty["first_fin_by"], dirty["first_reset_by"]) == (
        "dirty-close",
        "RSTO",
        "responder",
        "originator",
    )
    assert dirty["originator"] == f"[::1]:{clients['dirty-close'][0]}"
    assert (reset["teardown"], reset["first_reset_by"]) == ("reset", "responder")
    assert conns[f"[::1]:{ports['graceful']}"]["teardown"] == "graceful"
    assert conns[f"[::1]:{ports['refused']}"]["teardown"] == "refused"
    summary = next(f["attrs"] for f in facts if f["kind"] == "capture.teardown_summary" and f["subject"] == "all")
    assert (summary["connections"], summary["dirty_close"], summary["reset"], summary["refused"]) == (4, 1, 1, 1)
    (matched,) = [f["attrs"] for f in facts if f["kind"] == "capture.status64_match"]
    assert (
        matched["entries"],
        matched["matched"],
        matched["matched_dirty_close_by_tmg"],
        matched["matched_reset_by_server"],
        matched["match_basis"],
    ) == (3, 3, 1, 1, "4-tuple")
    cited = "\n".join(matched["samples"])
    assert f"([::1]:{clients['dirty-close'][0]} > [::1]:{ports['dirty-close']} at " in cited
    assert "(dirty close by TMG)" in cited


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_matching_is_the_same_when_the_capture_is_split_between_workers(tmp_path: Path, method: str) -> None:
    # many connections on many ports, so both workers own some of the matched ones
    segs, rows = [], []
    for n in range(40):
        scenario = ("dirty-close", "server-reset", "graceful-server-first")[n % 3]
        segs += segments(scenario, (TMG, 31000 + n), (CAS, 443), S + 0.5 + n, n)
        rows.append(fw_row(S + 1 + n, f"{TMG}:{31000 + n}", f"{CAS}:443"))
    rows.append(fw_row(S + 5, f"{TMG}:39999", f"{CAS}:443"))  # no such connection
    cap = write_pcap(tmp_path / "tmg.pcap", segs)
    log = write_w3c(tmp_path / "ISALOG_20240504_FWS_000.w3c", rows)
    one, _ = match([cap], [log], jobs=1)
    from diagnose.probes.capture import analysis

    original = analysis._split
    used: list[str] = []

    def split(*args, **kwargs):
        used.append("split")
        return original(*args[:5], method, *args[6:], **kwargs)

    analysis._split = split
    try:
        two, _ = match([cap], [log], jobs=2)
    finally:
        analysis._split = original
    assert used == ["split"]
    assert one == two
    assert (one["matched_dirty_close_by_tmg"], one["matched_reset_by_server"], one["unmatched"]) == (14, 13, 1)


def test_probe_capture_cli_matches_the_seed_log() -> None:
    seed = REPO / "examples" / "seed"
    result = run_cli(
        "probe", "capture", str(seed / "netmon-trace.txt"), "--log", str(seed / "ISALOG_20110504_FWS_000.w3c")
    )
    assert result.returncode == 0, result.stderr
    assert "matched 1 (dirty close by TMG 1, reset by the server 0, other 0), unmatched 0; by ports" in result.stdout
    assert "ISALOG_20110504_FWS_000.w3c:7 (10.1.4.98:31024 > 10.1.5.11:443" in result.stdout
    assert "netmon-trace.txt frames 1348-1410 (dirty close by TMG)" in result.stdout
