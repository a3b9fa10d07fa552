"""nginx's own access (combined, and with timing/upstream variables) and error logs, made by the real nginx
on loopback in front of a back end that hangs, resets and closes."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from diagnose.probes import ProbeContext
from diagnose.probes.proxylogs import collect, summarise
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

pytestmark = pytest.mark.skipif(missing("nginx") is not None, reason=str(missing("nginx")))

CONFIG = """
pid {work}/nginx.pid;
error_log {work}/error.log info;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    log_format timed '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
                     '"$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" '
                     'urt="$upstream_response_time" ua="$upstream_addr" us="$upstream_status"';
    access_log {work}/access.log combined;
    access_log {work}/timed.log timed;
    proxy_read_timeout 2s;
    proxy_connect_timeout 2s;
    server {{
        listen {host}:{port};
        location /down {{ proxy_pass http://{host}:{closed}; }}
        location / {{ proxy_pass http://{host}:{backend}; }}
    }}
}}
"""


@pytest.fixture(scope="module")
def nginx_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("nginx")
    backend = Backend()
    (port,) = free_ports(1)
    (work / "nginx.conf").write_text(CONFIG.format(work=work, host=LOOPBACK, port=port, backend=backend.port,
                                                   closed=closed_port()))
    proxy = Proxy([binary("nginx"), "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"],
                  work, [port])
    try:
        sessions = [
            lambda: get(port, "/ok"), lambda: get(port, "/ok"), lambda: get(port, "/hang"),
            lambda: get(port, "/reset"), lambda: get(port, "/close"), lambda: get(port, "/down"),
            lambda: get(port, "/hang", abort_after=0.5),
            lambda: get(port, "/Microsoft-Server-ActiveSync/default.eas?Cmd=Ping&User=u1&DeviceId=d1"),
        ]
        threads = [threading.Thread(target=s) for s in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_for_lines(work / "timed.log", len(sessions))
    finally:
        proxy.stop()
        backend.close()
    return work


def _fact(path: Path, subject: str) -> Any:
    result, problems = collect(ProbeContext(), {"paths": [str(path)]})
    by = {f.subject: f for f in result.facts}
    assert result.status.value == "complete", problems
    return by[subject]


@pytest.mark.parametrize("name", ["access.log", "timed.log"])
def test_access_statuses(nginx_logs: Path, name: str) -> None:
    lines = (nginx_logs / name).read_text().splitlines()
    fact = _fact(nginx_logs / name, "nginx:all")
    assert fact.get("records") == 8 == len(lines)
    statuses = {s.rsplit(" ", 1)[0].split(" ")[0]: 0 for s in fact.get("status_counts")}
    for s in fact.get("status_counts"):
        statuses[s.split(" ")[0]] += int(s.rsplit(" ", 1)[1])
    assert statuses["200"] == 3 and statuses["504"] == 1 and statuses["499"] == 1
    assert statuses["502"] == 3  # /reset, /close and /down (refused)
    assert fact.get("client_closed") == 1 and fact.get("gateway_timeout") == 1 and fact.get("bad_gateway") == 3
    assert fact.get("eas_ping") == 1
    for cite in fact.get("samples"):
        cls, where = cite.split(" ", 1)
        line = lines[int(where.rsplit(":", 1)[1]) - 1]
        assert {"client_closed": '" 499 ', "gateway_timeout": '" 504 ', "bad_gateway": '" 502 '}.get(cls, "") in line


def test_timed_log_reads_the_upstream_and_duration(nginx_logs: Path) -> None:
    result, _ = collect(ProbeContext(), {"paths": [str(nginx_logs / "timed.log")]})
    subjects = {f.subject for f in result.facts}
    assert any(s.startswith("nginx:upstream:127.0.0.1:") for s in subjects), subjects
    fact = next(f for f in result.facts if f.subject == "nginx:all")
    assert "eas_ping 1s 1" in fact.get("long_poll_durations")


def test_error_log_events(nginx_logs: Path) -> None:
    text = (nginx_logs / "error.log").read_text()
    fact = _fact(nginx_logs / "error.log", "nginx-error:all")
    assert fact.get("server_timeout") == text.count("upstream timed out (110: Connection timed out)") == 1
    assert fact.get("refused") == text.count("(111: Connection refused)") >= 1
    assert fact.get("server_closed") == text.count("upstream prematurely closed connection")
    assert fact.get("server_reset") == text.count("(104: Connection reset by peer)")
    assert fact.get("server_closed") + fact.get("server_reset") == 2  # /reset and /close, however nginx saw each


def test_rotated_logs_in_a_folder_are_read_oldest_first_and_once(nginx_logs: Path, tmp_path: Path) -> None:
    """nginx's own lines, rotated the way logrotate does (access.log -> access.log.1 -> access.log.2.gz,
    error.log -> error.log.1): every file is read, oldest first, and a file named twice counts once."""
    import gzip

    access = (nginx_logs / "timed.log").read_bytes().splitlines(keepends=True)
    errors = (nginx_logs / "error.log").read_bytes().splitlines(keepends=True)
    folder = tmp_path / "nginx"
    folder.mkdir()
    (folder / "access.log.2.gz").write_bytes(gzip.compress(b"".join(access[:3])))
    (folder / "access.log.1").write_bytes(b"".join(access[3:6]))
    (folder / "access.log").write_bytes(b"".join(access[6:]))
    (folder / "error.log.1").write_bytes(b"".join(errors[:2]))
    (folder / "error.log").write_bytes(b"".join(errors[2:]))
    summary, problems = summarise([str(folder), str(folder / "access.log.1"), str(folder / "*.log")])
    assert summary.files == [str(folder / name) for name in
                             ("access.log.2.gz", "access.log.1", "access.log", "error.log.1", "error.log")], problems
    assert summary.figures[("nginx", "all")].records == len(access) == 8
    result, _ = collect(ProbeContext(), {"paths": [str(folder)]})
    whole, _ = collect(ProbeContext(), {"paths": [str(nginx_logs / "timed.log"), str(nginx_logs / "error.log")]})
    counts = {f.subject: (f.get("status_counts"), f.get("code_counts")) for f in result.facts}
    assert counts == {f.subject: (f.get("status_counts"), f.get("code_counts")) for f in whole.facts}
    first = next(f for f in result.facts if f.subject == "nginx:all")
    assert first.get("first_time") == next(f for f in whole.facts if f.subject == "nginx:all").get("first_time")
