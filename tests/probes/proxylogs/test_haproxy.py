"""HAProxy's own HTTP and TCP logs (syslog-prefixed and raw), made by the real haproxy on loopback."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from diagnose.probes import ProbeContext
from diagnose.probes.proxylogs import collect
from tests.probes.proxylogs.proxies import (
    LOOPBACK,
    Backend,
    Proxy,
    binary,
    closed_port,
    free_ports,
    get,
    missing,
    tcp_session,
    wait_for_lines,
)

pytestmark = pytest.mark.skipif(missing("haproxy") is not None, reason=str(missing("haproxy")))

CONFIG = """
global
    maxconn 200
defaults
    timeout connect 1s
    timeout client 5s
    timeout server 2s
    option abortonclose
    option dontlognull
frontend fe_http
    mode http
    bind {host}:{http}
    log stdout format rfc3164 local0
    option httplog
    use_backend be_down if {{ path_beg /down }}
    default_backend be_exchange
backend be_exchange
    mode http
    server cas1 {host}:{backend}
backend be_down
    mode http
    server cas2 {host}:{closed}
frontend fe_tcp
    mode tcp
    bind {host}:{tcp}
    log stderr format raw local0
    option tcplog
    default_backend be_tcp
backend be_tcp
    mode tcp
    server cas1 {host}:{backend}
"""


@pytest.fixture(scope="module")
def haproxy_logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("haproxy")
    backend = Backend()
    http, tcp = free_ports(2)
    (work / "haproxy.cfg").write_text(
        CONFIG.format(host=LOOPBACK, http=http, tcp=tcp, backend=backend.port, closed=closed_port())
    )
    http_log, tcp_log = work / "http.log", work / "tcp.log"
    proxy = Proxy(
        [binary("haproxy"), "-db", "-f", str(work / "haproxy.cfg")], work, [http, tcp], stdout=http_log, stderr=tcp_log
    )
    try:
        sessions = [
            lambda: get(http, "/ok"),
            lambda: get(http, "/ok"),
            lambda: get(http, "/ok"),
            lambda: get(http, "/hang"),
            lambda: get(http, "/reset"),
            lambda: get(http, "/close"),
            lambda: get(http, "/down"),
            lambda: get(http, "/hang", abort_after=0.3),
            lambda: get(http, "/Microsoft-Server-ActiveSync/default.eas?Cmd=Ping&User=u1&DeviceId=d1"),
            lambda: get(http, "/Microsoft-Server-ActiveSync/default.eas?Cmd=Ping&User=u2&DeviceId=d2"),
        ]
        threads = [threading.Thread(target=s) for s in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        tcp_session(tcp, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        tcp_session(tcp, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        tcp_session(tcp, b"GET /reset HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for_lines(http_log, len(sessions))
        wait_for_lines(tcp_log, 3)
    finally:
        proxy.stop()
        backend.close()
    # the files from the first (fixture) call (a reused `haproxy` dir stays as it was)
    return {"http": http_log, "tcp": tcp_log, "work": work}


def _facts(paths: list[str]) -> dict[str, Any]:
    result, problems = collect(ProbeContext(), {"paths": paths})
    return {"result": result, "problems": problems, "by": {f.subject: f for f in result.facts}}


def test_http_log_states_and_statuses(haproxy_logs: dict[str, Any]) -> None:
    lines = Path(haproxy_logs["http"]).read_text().splitlines()
    assert lines and all(ln.startswith("<134>") for ln in lines), lines  # the syslog prefix, as written
    got = _facts([str(haproxy_logs["http"])])
    fact = got["by"]["haproxy:all"]
    assert got["result"].status.value == "complete", got["problems"]
    assert fact.get("records") == 10
    statuses = dict(s.rsplit(" ", 1) for s in fact.get("status_counts"))
    assert statuses["200"] == "5"  # three /ok and two pings
    assert statuses["504"] == "1"  # /hang: timeout server
    assert statuses["502"] == "2"  # /reset and /close
    assert statuses["503"] == "1"  # /down: nothing listens
    codes = dict(s.rsplit(" ", 1) for s in fact.get("code_counts"))
    assert codes["sH"] == "1" and codes["SH"] == "2" and codes["SC"] == "1"
    assert fact.get("server_timeout") == 1 and fact.get("server_closed") == 2 and fact.get("refused") == 1
    assert fact.get("client_closed") == 1  # the client that gave up on /hang
    assert fact.get("eas_ping") == 2 and fact.get("long_poll") == 2 and fact.get("long_poll_failed") == 0
    assert "eas_ping 1s 2" in fact.get("long_poll_durations")
    assert fact.get("formats") == ("haproxy-http",)
    # every cited sample is the line it names, and it holds the state it is cited for
    state_of = {"server_timeout": " sH", "server_closed": " SH", "refused": " SC", "client_closed": " C"}
    for cite in fact.get("samples"):
        cls, where = cite.split(" ", 1)
        line = int(where.rsplit(":", 1)[1])
        assert state_of.get(cls, "") in lines[line - 1]
    scoped = got["by"]["haproxy:backend:be_down"]
    assert scoped.get("records") == 1 and scoped.get("refused") == 1


def test_tcp_log_raw(haproxy_logs: dict[str, Any]) -> None:
    lines = Path(haproxy_logs["tcp"]).read_text().splitlines()
    got = _facts([str(haproxy_logs["tcp"])])
    fact = got["by"]["haproxy:all"]
    assert fact.get("formats") == ("haproxy-tcp",)
    assert fact.get("records") == 3 == len([ln for ln in lines if ln.strip()])
    codes = dict(s.rsplit(" ", 1) for s in fact.get("code_counts"))
    assert codes == {"SD": "1"}, lines  # the reset; the two others ended normally (--)
    assert fact.get("server_closed") == 1


def test_both_logs_in_one_gz_folder(haproxy_logs: dict[str, Any], tmp_path: Path) -> None:
    import gzip

    for name in ("http", "tcp"):
        (tmp_path / f"{name}.log.gz").write_bytes(gzip.compress(Path(haproxy_logs[name]).read_bytes()))
    fact = _facts([str(tmp_path)])["by"]["haproxy:all"]
    assert fact.get("records") == 13 and fact.get("files") == 2
    assert fact.get("formats") == ("haproxy-http", "haproxy-tcp")
