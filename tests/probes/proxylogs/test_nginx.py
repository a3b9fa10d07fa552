"""nginx's own access (combined, and with timing/upstream variables) and error logs, made by the real nginx
on loopback in front of a back end that hangs, resets and closes."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from diagnose.collect import plan_check
from diagnose.errors import InputError
from diagnose.probes import ProbeContext
from diagnose.probes.proxylogs import collect, summarise
from diagnose.probes.proxylogs.logformat import iso_time
from diagnose.profile import profile_from_mapping
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
    log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                    '$status $body_bytes_sent "$http_referer" '
                    '"$http_user_agent" "$http_x_forwarded_for"';
    log_format main_timed '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
                          '"$http_referer" "$http_user_agent" "$http_x_forwarded_for" $request_time '
                          '$upstream_response_time';
    # a format of one's own: nothing in combined's order
    log_format edge '$time_iso8601 $status $request_time "$request" $upstream_addr $upstream_status '
                    '$host:$server_port';
    access_log {work}/access.log combined;
    access_log {work}/timed.log timed;
    access_log {work}/main.log main;
    access_log {work}/main_timed.log main_timed;
    access_log {work}/edge.log edge;
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
    (work / "nginx.conf").write_text(
        CONFIG.format(work=work, host=LOOPBACK, port=port, backend=backend.port, closed=closed_port())
    )
    proxy = Proxy([binary("nginx"), "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"], work, [port])
    try:
        sessions = [
            lambda: get(port, "/ok"),
            lambda: get(port, "/ok"),
            lambda: get(port, "/hang"),
            lambda: get(port, "/reset"),
            lambda: get(port, "/close"),
            lambda: get(port, "/down"),
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
    assert summary.files == [
        str(folder / name) for name in ("access.log.2.gz", "access.log.1", "access.log", "error.log.1", "error.log")
    ], problems
    assert summary.figures[("nginx", "all")].records == len(access) == 8
    result, _ = collect(ProbeContext(), {"paths": [str(folder)]})
    whole, _ = collect(ProbeContext(), {"paths": [str(nginx_logs / "timed.log"), str(nginx_logs / "error.log")]})
    counts = {f.subject: (f.get("status_counts"), f.get("code_counts")) for f in result.facts}
    assert counts == {f.subject: (f.get("status_counts"), f.get("code_counts")) for f in whole.facts}
    first = next(f for f in result.facts if f.subject == "nginx:all")
    assert first.get("first_time") == next(f for f in whole.facts if f.subject == "nginx:all").get("first_time")


def _records(result: Any) -> dict[str, Any]:
    fact = next(f for f in result.facts if f.subject == "nginx:all")
    return {
        k: fact.get(k)
        for k in (
            "records",
            "status_counts",
            "client_closed",
            "gateway_timeout",
            "bad_gateway",
            "eas_ping",
            "long_poll_durations",
        )
    }


@pytest.mark.parametrize("name", ["main.log", "main_timed.log"])
def test_main_and_main_with_timing_are_known_without_a_format(nginx_logs: Path, name: str) -> None:
    """nginx's `main` format (and main + $request_time $upstream_response_time) as nginx wrote them: read
    as combined is, the timed one with the long poll's duration."""
    result, problems = collect(ProbeContext(), {"paths": [str(nginx_logs / name)]})
    assert result.status.value == "complete", problems
    got, timed = _records(result), _records(collect(ProbeContext(), {"paths": [str(nginx_logs / "timed.log")]})[0])
    assert got["records"] == 8
    assert {k: v for k, v in got.items() if k != "long_poll_durations"} == {
        k: v for k, v in timed.items() if k != "long_poll_durations"
    }
    assert list(got["long_poll_durations"]) == (list(timed["long_poll_durations"]) if name == "main_timed.log" else [])


def test_custom_log_format_from_nginx_conf(nginx_logs: Path, tmp_path: Path) -> None:
    """A log in a format of one's own is no known format; with the nginx.conf that wrote it
    (--nginx-log-format) it reads as the combined log of the same requests, and a line in no format
    is a bad line named by file:line."""
    edge = nginx_logs / "edge.log"
    with pytest.raises(InputError):
        collect(ProbeContext(), {"paths": [str(edge)]})
    conf = str(nginx_logs / "nginx.conf")
    result, problems = collect(ProbeContext(), {"paths": [str(edge)], "nginx_log_format": conf})
    assert result.status.value == "complete", problems
    timed = _records(collect(ProbeContext(), {"paths": [str(nginx_logs / "timed.log")]})[0])
    assert _records(result) == timed
    fact = next(f for f in result.facts if f.subject == "nginx:all")
    assert fact.get("first_time") == min(iso_time(ln.split(" ")[0]) for ln in edge.read_text().splitlines())
    assert fact.get("first_time").endswith("Z")
    damaged = tmp_path / "edge.log"
    lines = edge.read_text().splitlines()
    damaged.write_text("\n".join([*lines[:3], "GET / 200 nothing like it", *lines[3:]]) + "\n")
    result, problems = collect(ProbeContext(), {"paths": [str(damaged)], "nginx_log_format": [conf]})
    assert result.status.value == "partial"
    assert any(p.startswith(f"{damaged}:4: ") for p in problems), problems
    statement = next(ln for ln in (nginx_logs / "nginx.conf").read_text().split(";") if "log_format edge" in ln)
    result, _ = collect(ProbeContext(), {"paths": [str(edge)], "nginx_log_format": statement + ";"})
    assert _records(result) == timed
    profile = profile_from_mapping({"proxy_product": "nginx", "nginx_log_format": conf}, "site.yaml")
    result, _ = collect(ProbeContext(), plan_check("proxylogs", {"paths": [str(edge)]}, profile)[1])  # as run does
    assert _records(result) == timed


def test_bad_log_formats_are_one_error_naming_where(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text("http {\n  log_format broken '$status $request_time'\n}\n")
    with pytest.raises(InputError, match=r"nginx.conf:2"):
        collect(ProbeContext(), {"paths": [str(conf)], "nginx_log_format": str(conf)})
    conf.write_text("http {\n  log_format nostatus '$remote_addr $request_time';\n}\n")
    with pytest.raises(InputError, match=r"without \$status.*|nginx.conf:2"):
        collect(ProbeContext(), {"paths": [str(conf)], "nginx_log_format": str(conf)})
    conf.write_text("http {\n  access_log /var/log/nginx/access.log;\n}\n")
    with pytest.raises(InputError, match="no log_format"):
        collect(ProbeContext(), {"paths": [str(conf)], "nginx_log_format": str(conf)})
    with pytest.raises(InputError, match="neither a file nor a log_format"):
        collect(ProbeContext(), {"paths": [str(conf)], "nginx_log_format": str(conf) + ".missing"})
