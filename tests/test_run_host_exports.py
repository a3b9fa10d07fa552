"""`diagnose run` from what an administrator exports on the TMG server (netstat, netsh, System events)
and TMG's own log, end to end: raw files in the formats Windows writes them, the real probe path, the
rules, the ranking and the verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CAS = "10.0.0.10"
TMG_INTERNAL = "10.0.0.1"
DATA = Path(__file__).resolve().parent / "data" / "host"
FIELDS = (
    "computer\tdate\ttime\tIP protocol\tsource\tdestination\toriginal client IP\tsource network\t"
    "destination network\taction\tstatus\trule\tapplication protocol\tbytes sent\tbytes received\t"
    "connection time\tdestination name\tconnection ID"
)


def netstat_anob(time_wait: int, established: int = 40) -> str:
    """`netstat -anob` as Windows prints it: header, -b owner lines, TIME_WAIT sockets owned by no one."""
    lines = [
        "",
        "Active Connections",
        "",
        "  Proto  Local Address          Foreign Address        State           PID",
        "  TCP    0.0.0.0:443            0.0.0.0:0              LISTENING       1876",
        " [wspsrv.exe]",
    ]
    port = 49152
    for _ in range(established):
        lines += [f"  TCP    {TMG_INTERNAL}:{port:<5}         {CAS}:443          ESTABLISHED     1876", " [wspsrv.exe]"]
        port += 1
    for _ in range(time_wait):
        lines.append(f"  TCP    {TMG_INTERNAL}:{port:<5}         {CAS}:443          TIME_WAIT       0")
        port += 1
    lines += [
        "  UDP    0.0.0.0:123            *:*                                    968",
        "  W32Time",
        " [svchost.exe]",
        "",
    ]
    return "\r\n".join(lines)


def write_utf16(path: Path, text: str) -> Path:
    """What PowerShell's `>` writes: UTF-16 LE with a BOM."""
    path.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    return path


def write_fws_log(path: Path, status64: int, no_buffers: int) -> Path:
    """A TMG Firewall W3C log: Status 64 and WSAENOBUFS (0x80072747) failures on the TMG-to-CAS leg."""
    lines = [
        "#Software: Microsoft Forefront Threat Management Gateway 2010",
        "#Version: 1.0",
        "#Date: 2026-11-30 08:00:00",
        f"#Fields: {FIELDS}",
    ]
    for n in range(status64 + no_buffers):
        status = "0x80070040" if n < status64 else "0x80072747"
        t = f"08:{n // 60:02d}:{n % 60:02d}"
        lines.append(
            f"TMG01\t2026-11-30\t{t}\tTCP\t{TMG_INTERNAL}:{50000 + n}\t{CAS}:443\t{TMG_INTERNAL}\t"
            f"Local Host\tInternal\tFailed Connection Attempt\t{status}\tOWA (Exchange 2010)\tHTTPS\t812\t0\t"
            f"15\tcas01.contoso.local\t{n}"
        )
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


def profile(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(f'internal_addresses: [{CAS}]\npublished: [owa]\nexchange_version: "2010"\n')
    return path


def run_json(cli: Any, *args: str) -> dict[str, Any]:
    done = cli("run", *args, "--no-input", "--offline", "--format", "json")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def cause(out: dict[str, Any], cause_id: str) -> dict[str, Any] | None:
    return next((c for c in out["causes"] if c["id"] == cause_id), None)


def rules(found: dict[str, Any]) -> set[str]:
    return {r["id"] for r in found["rules"]}


def test_time_wait_flood_4231_and_10055_rank_port_exhaustion_first(cli: Any, tmp_path: Path) -> None:
    netstat = write_utf16(tmp_path / "netstat-anob.txt", netstat_anob(time_wait=16_000))
    log = write_fws_log(tmp_path / "ISALOG_20261130_FWS_000.w3c", status64=30, no_buffers=12)
    out = run_json(
        cli,
        "--profile",
        str(profile(tmp_path)),
        "--log",
        str(log),
        "--host-export",
        str(netstat),
        "--host-export",
        str(DATA / "events-system-eventviewer.csv"),
        "--host-export",
        str(DATA / "netsh-dynamicport-tcp-en.txt"),
    )
    top = out["causes"][0]
    assert top["id"] == "port-exhaustion", [c["id"] for c in out["causes"]]
    assert out["verdict"] == "fault"
    # 16,040 of 16,384 ports (0.8) + event 4231 (0.8) + 10055 in TMG's log (0.5)
    assert top["certainty"] == 0.98
    assert {"port-exhaustion-range-nearly-full", "tcpip-4231-ports-exhausted", "tmg-logs-no-buffers"} <= rules(top)
    probe = next(p for p in out["probes"] if p["check"] == "host-exports")
    assert probe["status"] == "complete"
    usage = next(f for f in out["facts"] if f["kind"] == "host.port_usage")
    assert usage["attrs"]["in_use"] == 16_040 and usage["attrs"]["range_size"] == 16_384
    assert usage["provenance"]["source"] == str(netstat)
    leg = next(f for f in out["facts"] if f["kind"] == "host.tcp_states" and f["attrs"].get("leg") == "server")
    assert leg["attrs"]["time_wait"] == 16_000 and leg["attrs"]["process"] == "wspsrv.exe"
    # TIME_WAIT towards the CAS, and the 4227 event of the same export, raise TIME_WAIT pressure too
    assert cause(out, "time-wait-pressure")["certainty"] > 0.5  # type: ignore[index]


def test_server_leg_time_wait_and_4227_establish_time_wait_pressure(cli: Any, tmp_path: Path) -> None:
    netstat = write_utf16(tmp_path / "netstat.txt", netstat_anob(time_wait=3_000, established=400))
    out = run_json(
        cli,
        "--profile",
        str(profile(tmp_path)),
        "--host-export",
        str(netstat),
        "--host-export",
        str(DATA / "events-system-wevtutil.txt"),
    )
    # the wevtutil text also holds 4231: port exhaustion is established by that event alone
    exhaustion = cause(out, "port-exhaustion")
    assert exhaustion is not None and rules(exhaustion) == {"tcpip-4231-ports-exhausted"}
    twp = cause(out, "time-wait-pressure")
    assert twp is not None and twp["certainty"] >= 0.8  # server leg (0.6) + 4227 (0.6), + 18% of the range
    assert rules(twp) >= {"time-wait-pressure-server-leg", "tcpip-4227-time-wait-reuse"}


def test_time_wait_without_exhaustion_events_ranks_time_wait_pressure(cli: Any, tmp_path: Path) -> None:
    netstat = write_utf16(tmp_path / "netstat.txt", netstat_anob(time_wait=3_000, established=400))
    events = tmp_path / "system.txt"
    events.write_text(
        "Event[0]:\r\n  Log Name: System\r\n  Source: Tcpip\r\n  Date: 2026-11-30T09:13:41.000\r\n"
        "  Event ID: 4227\r\n  Task: N/A\r\n  Level: Warning\r\n  Opcode: Info\r\n  Keyword: Classic\r\n"
        "  User: N/A\r\n  User Name: N/A\r\n  Computer: TMG01.contoso.local\r\n  Description: \r\n"
        "TCP/IP failed to establish an outgoing connection because the selected local endpoint was "
        "recently used to connect to the same remote endpoint.\r\n\r\n",
        encoding="cp437",
    )
    out = run_json(
        cli, "--profile", str(profile(tmp_path)), "--host-export", str(netstat), "--host-export", str(events)
    )
    assert out["causes"][0]["id"] == "time-wait-pressure", [c["id"] for c in out["causes"]]
    assert out["verdict"] == "misconfiguration"


def test_quiet_host_and_no_events_give_no_port_exhaustion(cli: Any, tmp_path: Path) -> None:
    netstat = write_utf16(tmp_path / "netstat.txt", netstat_anob(time_wait=20, established=60))
    events = tmp_path / "system.xml"
    events.write_text(
        "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>"
        "<Provider Name='Service Control Manager'/><EventID Qualifiers='16384'>7036</EventID>"
        "<Computer>TMG01.contoso.local</Computer></System></Event>\r\n",
        encoding="utf-8",
    )
    log = write_fws_log(tmp_path / "ISALOG_20261130_FWS_000.w3c", status64=30, no_buffers=0)
    out = run_json(
        cli,
        "--profile",
        str(profile(tmp_path)),
        "--log",
        str(log),
        "--host-export",
        str(netstat),
        "--host-export",
        str(events),
    )
    exhaustion = cause(out, "port-exhaustion")
    assert exhaustion is None or exhaustion["certainty"] < 0
    assert cause(out, "time-wait-pressure") is None
    assert out["verdict"] != "fault"


def test_garbled_netstat_is_one_error_line(cli: Any, tmp_path: Path) -> None:
    bad = tmp_path / "netstat.txt"
    bad.write_text(
        "\r\nActive Connections\r\n\r\n  Proto  Local Address  Foreign Address  State  PID\r\n"
        "  TCP    10.0.0.1:49152   10.0.0.10:443   TIME_WAIT   0\r\n"
        "  TCP    10.0.0.1:x   10.0.0.10:443   TIME_WAIT   0\r\n"
        "  TCP    10.0.0.1:49154   10.0.0.10:443   TIME_WAIT   0\r\n",
        encoding="cp437",
    )
    done = cli("run", "--host-export", str(bad), "--no-input", "--offline", "--format", "json")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"diagnose: error: {bad}:6: not an address:port in netstat line: 10.0.0.1:x"
    ]


def test_cut_off_netstat_is_read_and_marked_partial(cli: Any, tmp_path: Path) -> None:
    text = netstat_anob(time_wait=15_500)
    text = text[: text.rindex("  UDP")]
    netstat = write_utf16(tmp_path / "netstat.txt", text[: text.rindex("TIME_WAIT")])  # the copy stopped mid-line
    out = run_json(cli, "--profile", str(profile(tmp_path)), "--host-export", str(netstat))
    probe = next(p for p in out["probes"] if p["check"] == "host-exports")
    assert probe["status"] == "partial" and "last line cut off" in probe["reason"]
    assert out["causes"][0]["id"] == "port-exhaustion"


def test_tmg_log_counts_wsaenobufs_and_cites_them(cli: Any, tmp_path: Path) -> None:
    log = write_fws_log(tmp_path / "ISALOG_20261130_FWS_000.w3c", status64=5, no_buffers=3)
    done = cli("probe", "logs", str(log), "--format", "json", "--jobs", "1")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    overall = next(f["attrs"] for f in doc["facts"] if f["subject"] == "all")
    assert overall["no_buffers"] == 3 and overall["status64_count"] == 5
    assert [s for s in overall["other_samples"] if s.startswith("no_buffers ")] == [
        f"no_buffers {log}:{n}" for n in (10, 11, 12)
    ]
