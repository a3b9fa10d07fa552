"""From raw proxy logs to the ranked cause, through `diagnose run --proxy-log ...`, for each product.

HAProxy and nginx are the real programs on loopback, in front of the test back end (proxies.py); IIS
ARR cannot run here, so its logs are written in the exact W3C layout IIS 10 writes (CRLF, the
#Software/#Version/#Date/#Fields header, the default field set). Four cases per product:

- client: clients give up on slow requests and close (benign: proxy-client-disconnect);
- idle: EAS Pings held by the back end longer than the proxy's 5 s server timeout, so every one is
  cut at 5 s, below the heartbeat (proxy-idle-timeout, with the value seen);
- reset: the back end resets the connections under the requests (proxy-backend-resets);
- down: nothing listens where the back end should be (proxy-backend-unreachable).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.probes.proxylogs.proxies import (
    LOOPBACK,
    Backend,
    Proxy,
    binary,
    closed_port,
    free_ports,
    get,
    missing,
    wait_for_lines,
)

ROOT = Path(__file__).resolve().parents[3]
CASES = ("client", "idle", "reset", "down")
EXPECTED = {
    "client": "proxy-client-disconnect",
    "idle": "proxy-idle-timeout",
    "reset": "proxy-backend-resets",
    "down": "proxy-backend-unreachable",
    "rpc": "proxy-buffers-outlook-anywhere",
}
NGINX_CASES = (*CASES, "rpc")  # nginx's default 1 MB client_max_body_size refuses Outlook Anywhere's body
PING = "/Microsoft-Server-ActiveSync/default.eas?Cmd=Ping&User=u{n}&DeviceId=d{n}&DeviceType=iPhone&hold=8"


def rpc_channel(port: int, method: str) -> bytes:
    """Outlook Anywhere opening a channel: RPC_IN_DATA / RPC_OUT_DATA announcing a 1 GB body."""
    with socket.create_connection((LOOPBACK, port), timeout=30) as s:
        s.sendall(
            f"{method} /rpc/rpcproxy.dll?cas01.contoso.test:6001 HTTP/1.1\r\nHost: mail.contoso.test\r\n"
            "Content-Length: 1073741824\r\nUser-Agent: MSRPC\r\n\r\n".encode()
        )
        return s.recv(4096)


def sessions(case: str, port: int) -> list[Callable[[], bytes]]:
    """The client side of each case: what the users' devices do through the proxy."""
    ok = [lambda: get(port, "/ok"), lambda: get(port, "/ok")]
    if case == "client":
        return ok + [lambda: get(port, "/hang", abort_after=0.4) for _ in range(3)]
    if case == "idle":
        return ok + [lambda n=n: get(port, PING.format(n=n)) for n in range(4)]
    if case == "reset":
        return ok + [lambda: get(port, "/reset") for _ in range(3)]
    if case == "rpc":
        return ok + [lambda m=m: rpc_channel(port, m) for m in ("RPC_IN_DATA", "RPC_OUT_DATA")]
    return [lambda: get(port, "/owa/") for _ in range(3)]


def case_ports(cases: tuple[str, ...] = CASES) -> dict[str, int]:
    free = free_ports(len(cases))
    return {case: free[i] for i, case in enumerate(cases)}


def drive_all(ports: dict[str, int], log_of: Callable[[str], Path]) -> None:
    """Every case's sessions at once (the idle case takes the proxies' 5 s), then wait for the logs."""
    threads = [threading.Thread(target=s) for case, port in ports.items() for s in sessions(case, port)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for case, port in ports.items():
        wait_for_lines(log_of(case), len(sessions(case, port)))


def diagnose(paths: list[Path], profile: Path | None = None, answers: Path | None = None) -> dict[str, Any]:
    argv = [sys.executable, "-m", "diagnose", "run", "--no-input", "--offline", "--quiet", "--format", "json"]
    for path in paths:
        argv += ["--proxy-log", str(path)]
    if profile is not None:
        argv += ["--profile", str(profile)]
    if answers is not None:
        argv += ["--answers", str(answers)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def first_cause(report: dict[str, Any]) -> str:
    causes = [c for c in report["causes"] if c["certainty"] > 0]
    assert causes, report["causes"]
    return str(causes[0]["id"])


def idle_fact(report: dict[str, Any]) -> dict[str, Any]:
    found = [f for f in report["facts"] if f["kind"] == "proxy.idle_timeout"]
    assert len(found) == 1, found
    return dict(found[0]["attrs"])


# ------------------------------------------------------------------ HAProxy

HAPROXY = """
global
    maxconn 100
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 5s
    option abortonclose
frontend fe
    bind {host}:{port}
    log stdout format rfc3164 local0
    option httplog
    default_backend be_exchange
backend be_exchange
    server cas1 {host}:{backend}
"""


@pytest.fixture(scope="module")
def haproxy_logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if missing("haproxy"):
        pytest.skip(str(missing("haproxy")))
    work = tmp_path_factory.mktemp("haproxy-e2e")
    backend = Backend()
    ports = case_ports()
    logs: dict[str, Path] = {}
    proxies = []
    try:
        for case, port in ports.items():
            target = closed_port() if case == "down" else backend.port
            (work / f"{case}.cfg").write_text(HAPROXY.format(host=LOOPBACK, port=port, backend=target))
            logs[case] = work / f"{case}.log"
            proxies.append(
                Proxy([binary("haproxy"), "-db", "-f", str(work / f"{case}.cfg")], work, [port], stdout=logs[case])
            )
        drive_all(ports, logs.__getitem__)
    finally:
        for proxy in proxies:
            proxy.stop()
        backend.close()
    return logs


@pytest.mark.parametrize("case", CASES)
def test_haproxy_ranks_the_right_cause_first(haproxy_logs: dict[str, Path], case: str, tmp_path: Path) -> None:
    profile = None
    if case == "idle":  # the devices' heartbeat, longer than HAProxy's 5 s `timeout server`
        profile = tmp_path / "site.yaml"
        profile.write_text("proxy_product: haproxy\nproxy_addresses: [127.0.0.1]\nheartbeat_seconds: 8\n")
    report = diagnose([haproxy_logs[case]], profile)
    assert first_cause(report) == EXPECTED[case], (haproxy_logs[case].read_text(), report["causes"])
    if case == "idle":
        idle = idle_fact(report)
        assert idle["long_poll"] == "eas_ping" and idle["seconds"] == 5 and idle["failed"] == 4, (
            idle,
            haproxy_logs[case].read_text(),
        )
        assert idle["share"] == 1.0 and idle["heartbeat"] == 8 and idle["heartbeat_source"] == "profile"
        top = report["causes"][0]
        assert "ended at 5 s" in json.dumps(top), top  # the value seen is in the explanation
        assert any("timeout server" in step for step in top["remediation"])


def test_haproxy_client_closes_are_not_benign_when_users_fail(haproxy_logs: dict[str, Path], tmp_path: Path) -> None:
    """The same client closes, but the users report failures: the benign reading is no longer established."""
    answers = tmp_path / "answers.yaml"
    answers.write_text('users-report-failures: "yes"\n')
    report = diagnose([haproxy_logs["client"]], answers=answers)
    benign = [c["certainty"] for c in report["causes"] if c["id"] == "proxy-client-disconnect"]
    assert all(cf < 0.5 for cf in benign) and report["verdict"] != "benign", report["causes"]
    assert diagnose([haproxy_logs["client"]])["verdict"] == "benign"  # the same log without the answer


# ------------------------------------------------------------------ nginx

NGINX_SERVER = """
    server {{
        listen {host}:{port};
        access_log {work}/{case}.access.log timed;
        error_log {work}/{case}.error.log info;
        location / {{ proxy_pass http://{host}:{backend}; }}
    }}"""
NGINX = """
pid {work}/nginx.pid;
error_log {work}/main-error.log info;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    log_format timed '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
                     '"$http_referer" "$http_user_agent" rt=$request_time '
                     'urt="$upstream_response_time" ua="$upstream_addr" us="$upstream_status"';
    proxy_read_timeout 5s;
    proxy_connect_timeout 2s;
{servers}
}}
"""


@pytest.fixture(scope="module")
def nginx_logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    if missing("nginx"):
        pytest.skip(str(missing("nginx")))
    work = tmp_path_factory.mktemp("nginx-e2e")
    backend = Backend()
    ports = case_ports(NGINX_CASES)
    servers = "".join(
        NGINX_SERVER.format(
            host=LOOPBACK, port=port, work=work, case=case, backend=closed_port() if case == "down" else backend.port
        )
        for case, port in ports.items()
    )
    (work / "nginx.conf").write_text(NGINX.format(work=work, servers=servers))
    proxy = Proxy(
        [binary("nginx"), "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"],
        work,
        list(ports.values()),
    )
    try:
        drive_all(ports, lambda case: work / f"{case}.access.log")
    finally:
        proxy.stop()
        backend.close()
    return {case: [work / f"{case}.access.log", work / f"{case}.error.log"] for case in NGINX_CASES}


@pytest.mark.parametrize("case", NGINX_CASES)
def test_nginx_ranks_the_right_cause_first(nginx_logs: dict[str, list[Path]], case: str) -> None:
    logs = [p for p in nginx_logs[case] if p.exists() and p.stat().st_size]
    report = diagnose(logs)  # no profile: for EAS Ping the heartbeat is at least Exchange's 60 s minimum
    assert first_cause(report) == EXPECTED[case], ([p.read_text() for p in logs], report["causes"])
    if case == "idle":
        idle = idle_fact(report)
        assert idle["seconds"] == 5 and idle["failed"] == 4 and idle["share"] == 1.0, (idle, logs[0].read_text())
        assert idle["heartbeat"] == 60 and idle["heartbeat_source"] == "exchange-minimum"
        assert any("proxy_read_timeout" in step for step in report["causes"][0]["remediation"])


# ------------------------------------------------------------------ IIS ARR (recorded in IIS's own format)

IIS_HEADER = (
    "#Software: Microsoft Internet Information Services 10.0\r\n#Version: 1.0\r\n"
    "#Date: 2026-12-06 09:00:00\r\n"
    "#Fields: date time s-sitename s-computername s-ip cs-method cs-uri-stem cs-uri-query s-port "
    "cs-username c-ip cs-version cs(User-Agent) cs(Referer) cs-host sc-status sc-substatus "
    "sc-win32-status sc-bytes cs-bytes time-taken\r\n"
)
EAS = "/Microsoft-Server-ActiveSync/default.eas"


def _arr_row(second: int, method: str, stem: str, query: str, status: str, sub: str, win32: str, taken_ms: int) -> str:
    return (
        f"2026-12-06 09:00:{second:02d} W3SVC1 ARR01 192.0.2.10 {method} {stem} {query} 443 "
        f"CONTOSO\\user{second} 198.51.100.{second + 1} HTTP/1.1 Apple-iPhone9C1/1905.258 - "
        f"mail.contoso.test {status} {sub} {win32} 412 735 {taken_ms}\r\n"
    )


def arr_log(case: str) -> str:
    """The ARR front end's W3SVC1 log of one case, as IIS 10 writes it."""
    rows = [
        _arr_row(0, "GET", "/owa/", "-", "200", "0", "0", 31),
        _arr_row(1, "GET", "/owa/", "-", "200", "0", "0", 15),
    ]
    for i in range(2, 6):
        ping = f"Cmd=Ping&User=user{i}&DeviceId=D{i}&DeviceType=iPhone"
        if case == "client":  # the phone left while the answer was being sent
            rows.append(_arr_row(i, "GET", "/owa/service.svc", "action=GetItem", "200", "0", "64", 2_000 + i))
        elif case == "idle":  # ARR's 120 s proxy time-out cuts every Ping of a 480 s heartbeat
            rows.append(_arr_row(i, "POST", EAS, ping, "502", "3", "12002", 120_000 + 7 * i))
        elif case == "reset":  # the CAS resets: WinHTTP 12030 (also logged as its HRESULT)
            rows.append(_arr_row(i, "GET", "/owa/", "-", "502", "3", "12030" if i % 2 else "0x80072efe", 40 + i))
        else:  # nothing listens on the CAS
            rows.append(_arr_row(i, "GET", "/owa/", "-", "502", "3", "12029", 1_010 + i))
    return IIS_HEADER + "".join(rows)


@pytest.mark.parametrize("case", CASES)
def test_iis_arr_ranks_the_right_cause_first(case: str, tmp_path: Path) -> None:
    log = tmp_path / "W3SVC1" / "u_ex261206.log"
    log.parent.mkdir()
    log.write_bytes(arr_log(case).encode("ascii"))
    profile = tmp_path / "site.yaml"
    profile.write_text("proxy_product: iis-arr\nheartbeat_seconds: 480\n")
    report = diagnose([log.parent], profile)
    assert first_cause(report) == EXPECTED[case], report["causes"]
    if case == "idle":
        idle = idle_fact(report)
        assert idle["seconds"] == 120 and idle["failed"] == 4 and idle["below_heartbeat"] is True
        assert any("Time-out" in step for step in report["causes"][0]["remediation"])


def test_iis_arr_idle_without_heartbeat_is_not_called_below_it(tmp_path: Path) -> None:
    """Pings cut at 120 s with no heartbeat known: 120 s is above Exchange's 60 s minimum, so the
    detector cannot say "below the heartbeat" and the stronger rule stays silent."""
    log = tmp_path / "u_ex261206.log"
    log.write_bytes(arr_log("idle").encode("ascii"))
    report = diagnose([log])
    idle = idle_fact(report)
    assert idle["clustered"] is True and idle["below_heartbeat"] is False and idle["heartbeat"] == 60
    fired = [json.dumps(r) for c in report["causes"] for r in c["rules"]]
    assert fired and not any("idle-timeout-below-heartbeat" in r for r in fired)
    assert any("server-timeouts" in r for r in fired)  # ARR's 502.3 / 12002 are still server timeouts
    # lasting Exchange's 60 s minimum does not mean a Ping ran out its heartbeat: no benign long-poll end
    assert "after_share" not in idle and not any("long-polls-end-at-heartbeat" in r for r in fired)


def test_iis_pings_that_ran_out_their_heartbeat_are_a_benign_long_poll_end(tmp_path: Path) -> None:
    """EAS Pings logged 200 with Win32 64 after about the 480 s heartbeat: the phones were gone when
    Exchange answered. The benign long-poll end ranks first, no problem cause is established."""
    rows = [
        _arr_row(i, "POST", EAS, f"Cmd=Ping&User=user{i}&DeviceId=D{i}", "200", "0", "64", 480_000 + 977 * i)
        for i in range(6)
    ]
    log = tmp_path / "u_ex261206.log"
    log.write_bytes((IIS_HEADER + "".join(rows)).encode("ascii"))
    profile = tmp_path / "site.yaml"
    profile.write_text("proxy_product: iis-arr\nheartbeat_seconds: 480\n")
    report = diagnose([log], profile)
    assert first_cause(report) == "long-poll-end" and report["verdict"] == "benign", report["causes"]
