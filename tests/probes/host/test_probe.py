"""The host probe, for real on this machine: loopback connections put into TIME_WAIT and CLOSE_WAIT."""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from diagnose.facts import Fact, ProbeStatus
from diagnose.kinds import fact_kinds
from diagnose.probes import ProbeContext
from diagnose.probes.host.probe import PortRange, TcpSocket, parse_netsh_dynamicport, port_usage_fact, probe

TIME_WAIT_N = 12
CLOSE_WAIT_N = 7


def _count(port: int, state: str, side: str) -> int:
    n = 0
    for c in psutil.net_connections(kind="tcp"):
        addr = c.raddr if side == "remote" else c.laddr
        if addr and addr.port == port and c.status == state:
            n += 1
    return n


def _wait_for(port: int, state: str, side: str, n: int) -> None:
    deadline = time.monotonic() + 5
    while _count(port, state, side) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {_count(port, state, side)} of {n} sockets reached {state}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def loopback_states() -> Iterator[dict[str, int]]:
    """TIME_WAIT_N client sockets in TIME_WAIT towards one server port, and CLOSE_WAIT_N server-side
    sockets left in CLOSE_WAIT on another (the peer closed; this side never does)."""
    tw_server = socket.create_server(("127.0.0.1", 0), backlog=64)
    tw_port = tw_server.getsockname()[1]
    for _ in range(TIME_WAIT_N):
        client = socket.create_connection(("127.0.0.1", tw_port), timeout=5)
        accepted, _ = tw_server.accept()
        client.close()  # the client closes first (active close) ...
        assert accepted.recv(1) == b""  # ... the server sees the FIN ...
        accepted.close()  # ... and closes: the client side ends in TIME_WAIT
    tw_server.close()
    _wait_for(tw_port, "TIME_WAIT", "remote", TIME_WAIT_N)

    cw_server = socket.create_server(("127.0.0.1", 0), backlog=64)
    cw_port = cw_server.getsockname()[1]
    held = []
    for _ in range(CLOSE_WAIT_N):
        client = socket.create_connection(("127.0.0.1", cw_port), timeout=5)
        accepted, _ = cw_server.accept()
        client.close()  # the peer closes; the accepted socket is never closed: CLOSE_WAIT
        held.append(accepted)
    _wait_for(cw_port, "CLOSE_WAIT", "local", CLOSE_WAIT_N)
    try:
        yield {"time_wait_port": tw_port, "close_wait_port": cw_port}
    finally:
        for s in held:
            s.close()
        cw_server.close()


def by_subject(facts: tuple[Fact, ...], kind: str) -> dict[str, Fact]:
    return {f.subject: f for f in facts if f.kind == kind}


def test_probe_counts_real_time_wait_and_close_wait(loopback_states: dict[str, int]) -> None:
    tw_port = loopback_states["time_wait_port"]
    cw_port = loopback_states["close_wait_port"]
    ctx = ProbeContext(check="host")
    result = probe(ctx, {"remote_ports": [tw_port, cw_port], "server_addresses": ["127.0.0.1"]})
    fact_kinds().check(result.facts, "host probe")
    tcp = by_subject(result.facts, "host.tcp_states")
    overall = tcp["all"].attrs
    assert overall["time_wait"] >= TIME_WAIT_N
    assert overall["close_wait"] >= CLOSE_WAIT_N
    assert overall["total"] >= TIME_WAIT_N + CLOSE_WAIT_N
    # the TIME_WAIT sockets all point at the one server port: an endpoint on the server leg
    leg = tcp[f"remote:127.0.0.1:{tw_port}"].attrs
    assert leg["time_wait"] == TIME_WAIT_N
    assert leg["leg"] == "server" and leg["remote_port"] == tw_port
    assert leg["time_wait_ratio"] == 1.0
    # the closed clients of the CLOSE_WAIT sockets wait in FIN_WAIT2 towards the other port
    assert tcp[f"remote:127.0.0.1:{cw_port}"].attrs["fin_wait"] == CLOSE_WAIT_N


def test_port_usage_counts_the_client_ports(loopback_states: dict[str, int]) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/sys/net/ipv4/ip_local_port_range")
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    result = probe(ProbeContext(), {})
    usage = by_subject(result.facts, "host.port_usage")["tcp"].attrs
    assert (usage["range_low"], usage["range_high"], usage["range_size"]) == (low, high, high - low + 1)
    # the TIME_WAIT client sockets hold ephemeral ports from the range
    assert usage["time_wait_in_range"] >= TIME_WAIT_N
    assert usage["in_use"] >= TIME_WAIT_N + CLOSE_WAIT_N
    assert usage["usage_share"] == round(usage["in_use"] / usage["range_size"], 4)
    assert usage["max_per_remote"] >= TIME_WAIT_N
    assert usage["time_wait_delay"] == 60 and usage["time_wait_delay_source"] == "linux-constant"
    assert result.status == ProbeStatus.COMPLETE


def test_cli_probe_host_json(cli: Any, loopback_states: dict[str, int]) -> None:
    tw_port = loopback_states["time_wait_port"]
    done = cli("probe", "host", "--server", "127.0.0.1", "--remote-port", str(tw_port), "--format", "json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    tcp = {f["subject"]: f["attrs"] for f in out["facts"] if f["kind"] == "host.tcp_states"}
    assert tcp["all"]["time_wait"] >= TIME_WAIT_N and tcp["all"]["close_wait"] >= CLOSE_WAIT_N
    assert tcp[f"remote:127.0.0.1:{tw_port}"]["time_wait"] == TIME_WAIT_N
    assert tcp[f"remote:127.0.0.1:{tw_port}"]["leg"] == "server"


def test_proxy_process_cpu_and_memory() -> None:
    # this test process stands in for the proxy: the probe finds it by name and samples it
    me = psutil.Process()
    result = probe(ProbeContext(), {"process_names": [me.name()]})
    procs = [f for f in result.facts if f.kind == "host.process" and f.attrs["pid"] == me.pid]
    assert len(procs) == 1
    attrs = procs[0].attrs
    assert attrs["memory_rss"] > 1_000_000 and attrs["threads"] >= 1 and attrs["cpu_percent"] >= 0.0


def test_proxy_not_running_is_said_not_invented() -> None:
    result = probe(ProbeContext(), {"process_names": ["wspsrv.exe"]})
    assert not [f for f in result.facts if f.kind == "host.process"]
    assert "proxy process not running here (wspsrv.exe)" in result.reason


def test_not_the_tmg_host_is_unavailable() -> None:
    result = probe(ProbeContext(), {"tmg_addresses": ["192.0.2.1"]})
    assert result.status == ProbeStatus.UNAVAILABLE and "not the TMG server" in result.reason
    result = probe(ProbeContext(), {"tmg_addresses": ["127.0.0.1"]})
    assert result.status == ProbeStatus.COMPLETE


def test_netsh_dynamicport_english_and_german() -> None:
    english = (
        "\r\nProtocol tcp Dynamic Port Range\r\n---------------------------------\r\n"
        "Start Port      : 49152\r\nNumber of Ports : 16384\r\n\r\n"
    )
    german = (
        "\r\nProtokoll tcp Dynamischer Portbereich\r\n---------------------------------\r\n"
        "Startport       : 10000\r\nAnzahl Ports    : 55535\r\n\r\n"
    )
    assert parse_netsh_dynamicport(english) == (49152, 16384)
    assert parse_netsh_dynamicport(german) == (10000, 55535)
    assert parse_netsh_dynamicport("The following command was not found: int ipv4 show dynamicport tcp.") is None


def test_port_usage_shares() -> None:
    rng = PortRange(49152, 65535, "netsh")
    sockets = [TcpSocket("10.0.0.1", 49152 + i, "192.0.2.10", 443, "TIME_WAIT") for i in range(9000)]
    sockets += [TcpSocket("10.0.0.1", 443, "198.51.100.7", 50000 + i, "ESTABLISHED") for i in range(50)]
    usage = port_usage_fact(sockets, rng, None).attrs
    assert usage["range_size"] == 16384
    assert usage["in_use"] == 9000
    assert usage["usage_share"] == round(9000 / 16384, 4)
    assert usage["time_wait_share"] == round(9000 / 16384, 4)
    assert usage["busiest_remote"] == "192.0.2.10:443" and usage["max_per_remote"] == 9000


def test_a_busy_table_parses_each_remote_address_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """100,000 sockets go to a few remote addresses: each is parsed (and an IPv4-mapped IPv6 one turned
    into IPv4) once, not once per socket and per fact (bench/services.py: 0.83 s -> 0.09 s for 100,000)."""
    from diagnose.probes.host import probe as host

    parsed: list[str] = []
    real = host.ipaddress.ip_address

    def counting(addr: str) -> Any:
        parsed.append(addr)
        return real(addr)

    monkeypatch.setattr(host.ipaddress, "ip_address", counting)
    getattr(host._norm_addr, "cache_clear", lambda: None)()  # (a cache of an earlier test)
    remotes = ["192.0.2.10", "::ffff:192.0.2.10", "192.0.2.11", "2001:db8::5"]
    sockets = [TcpSocket("10.0.0.1", 49152 + i % 16000, remotes[i % 4], 443, "TIME_WAIT") for i in range(4000)]
    facts = host.tcp_facts(sockets, {"192.0.2.10"}, set(), 20, None)
    usage = port_usage_fact(sockets, PortRange(49152, 65535, "netsh"), None).attrs
    by_remote = {f.attrs["remote"]: f.attrs["time_wait"] for f in facts if f.subject != "all"}
    assert by_remote == {"192.0.2.10:443": 2000, "192.0.2.11:443": 1000, "[2001:db8::5]:443": 1000}
    assert usage["busiest_remote"] == "192.0.2.10:443" and usage["max_per_remote"] == 2000
    assert sorted(parsed) == sorted(remotes)
