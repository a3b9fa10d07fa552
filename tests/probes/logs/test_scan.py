"""The logs probe on real ISA samples and on files written here in the exact formats TMG writes."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from diagnose.kinds import fact_kinds
from diagnose.probes import ProbeContext
from diagnose.probes.logs import collect, summarise
from diagnose.probes.logs.codes import result_code
from diagnose.probes.logs.scan import Site
from diagnose.probes.logs.summary import build_facts
from tests.conftest import run_cli

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
    "bidirectional",
    "bytes sent",
    "bytes sent intermediate",
    "bytes received",
    "bytes received intermediate",
    "connection time",
    "connection time intermediate",
    "destination name",
    "username",
    "agent",
    "session ID",
    "connection ID",
    "interface",
    "IP header",
    "protocol payload",
]
WEB_FIELDS = [
    "c-ip",
    "cs-username",
    "c-agent",
    "sc-authenticated",
    "date",
    "time",
    "s-svcname",
    "s-computername",
    "cs-referred",
    "r-host",
    "r-ip",
    "r-port",
    "time-taken",
    "cs-bytes",
    "sc-bytes",
    "cs-protocol",
    "cs-transport",
    "s-operation",
    "cs-uri",
    "cs-mime-type",
    "s-object-source",
    "sc-status",
    "s-cache-info",
    "rule",
    "FilterInfo",
    "cs-Network",
    "sc-Network",
    "error-info",
    "action",
    "GMT Time",
    "AuthenticationServer",
]
HEADER = "#Software: Microsoft Forefront Threat Management Gateway\n#Version: 2.0\n#Date: 2024-03-04 10:00:00\n"


def fw_row(
    time: str = "10:00:01",
    src: str = "10.0.0.1:50000",
    dst: str = "10.0.0.20:443",
    action: str = "Failed",
    status: str = "0x80070040",
    rule: str = "Publish OWA",
    srcnet: str = "Local Host",
    dstnet: str = "Internal",
    orig: str = "198.51.100.7",
    fields: list[str] | None = None,
) -> str:
    values = {
        "computer": "TMG01",
        "date": "2024-03-04",
        "time": time,
        "IP protocol": "TCP",
        "source": src,
        "destination": dst,
        "original client IP": orig,
        "source network": srcnet,
        "destination network": dstnet,
        "action": action,
        "status": status,
        "rule": rule,
        "application protocol": "HTTPS Server",
        "bidirectional": "-",
        "connection time": "1500",
    }
    return "\t".join(
        values.get(f, "-" if f not in ("bytes sent", "bytes received") else "0") for f in (fields or FW_FIELDS)
    )


def web_row(
    time: str = "10:00:02",
    cip: str = "198.51.100.7",
    status: str = "200",
    action: str = "Allowed",
    method: str = "GET",
    uri: str = "https://mail.contoso.com/owa/",
    taken: str = "15",
    rip: str = "10.0.0.20",
) -> str:
    values = {
        "c-ip": cip,
        "cs-username": "anonymous",
        "c-agent": "Mozilla/4.0 (compatible; MSIE 7.0)",
        "sc-authenticated": "N",
        "date": "2024-03-04",
        "time": time,
        "s-svcname": "w3reverseproxy",
        "s-computername": "TMG01",
        "r-host": "mail.contoso.com",
        "r-ip": rip,
        "r-port": "443",
        "time-taken": taken,
        "cs-bytes": "300",
        "sc-bytes": "1200",
        "cs-protocol": "https",
        "cs-transport": "TCP",
        "s-operation": method,
        "cs-uri": uri,
        "sc-status": status,
        "rule": "Publish Exchange",
        "FilterInfo": "Req ID: 0a1b2c3d; Compression: client=No, server=No",
        "cs-Network": "External",
        "sc-Network": "Internal",
        "error-info": "0x0",
        "action": action,
        "GMT Time": f"2024-03-04 {time}",
    }
    return "\t".join(values.get(f, "-") for f in WEB_FIELDS)


def w3c(fields: list[str], rows: list[str], eol: str = "\n") -> str:
    return (HEADER + "#Fields: " + "\t".join(fields) + "\n" + "\n".join(rows) + "\n").replace("\n", eol)


def probe_json(*args: str) -> dict[str, Any]:
    proc = run_cli("probe", "logs", *args, "--format", "json", "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def overall(doc: dict[str, Any]) -> dict[str, Any]:
    return next(f["attrs"] for f in doc["facts"] if f["subject"] == "all")


def by_subject(doc: dict[str, Any], subject: str) -> dict[str, Any]:
    return next(f["attrs"] for f in doc["facts"] if f["subject"] == subject)


# ------------------------------------------------------------------ real samples


def test_real_isa2004_firewall_log(corpus: Path) -> None:
    doc = probe_json(str(corpus / "tmg-logs" / "isa2004_firewall_w3c_ISALOG_FWS.w3c"))
    attrs = overall(doc)
    # SOURCE.md: 33 data lines, 31 Denied 0xc004000d, 2 Intermediate 0x0
    assert attrs["records"] == 33 and attrs["bad_lines"] == 0 and attrs["status64_count"] == 0
    assert attrs["connections"] == 31  # the two Intermediate progress rows are not connections
    assert attrs["first_time"] == "2006-10-27T00:00:00Z"
    assert by_subject(doc, "rule:Allow RPC from ISA Server to trusted servers")["leg"] == "server"
    assert doc["schema"] == "diagnose.probe/1" and doc["probe"]["status"] == "complete"


def test_real_isa2004_webproxy_log(corpus: Path) -> None:
    path = corpus / "tmg-logs" / "isa2004_webproxy_w3c_ISALOG_WEB.w3c"
    doc = probe_json(str(path))
    attrs = overall(doc)
    assert attrs["records"] == 38 and attrs["bad_lines"] == 0
    # 2 x 12202 denials and 2 x Failed with status 5 are client-visible; the 4 x 12209 (407) are not
    cited = [s.split(" ", 1)[1] for s in attrs["other_samples"] if s.startswith("client_error")]
    lines = path.read_text().splitlines()
    assert cited and all(
        ("\t12202\t" in lines[int(c.rsplit(":", 1)[1]) - 1] or lines[int(c.rsplit(":", 1)[1]) - 1].endswith("Failed"))
        for c in cited
    )


def test_real_collapsed_log_viewer_copy(corpus: Path) -> None:
    doc = probe_json(str(corpus / "tmg-logs" / "pastebin_xM4JAaBb_logviewer_copy_excerpt.txt"))
    attrs = overall(doc)
    assert attrs["records"] == 4 and attrs["formats"] == ["viewer-collapsed"]
    assert attrs["first_time"] == "2011-09-28T14:36:14Z"  # the GMT column, not the local one
    assert any("TABs collapsed" in p for p in doc["probe"]["notes"])


# ------------------------------------------------------------------ Status 64 in every spelling


@pytest.mark.parametrize(
    "text",
    [
        "64",
        "0x80070040",
        "0x80070040 ERROR_NETNAME_DELETED",
        "ERROR_NETNAME_DELETED",
        "The specified network name is no longer available.",
        "64 The specified network name is no longer available.",
        "-2147024832",
        "Status: 64",
    ],
)
def test_status64_spellings(text: str) -> None:
    assert result_code(text).value == 64


def test_other_codes_normalised() -> None:
    assert result_code("0x80074e24").group == "connection_killed"
    assert result_code("0x8007274d").value == 10061
    assert result_code("0xC004000D").name == "FWX_E_POLICY_RULES_DENIED"
    assert result_code("0xc0040037 FWX_E_TCP_RATE_QUOTA_EXCEEDED_DROPPED").group == "flood"
    assert result_code("-2146893022").name == "SEC_E_WRONG_PRINCIPAL"
    assert result_code("200 OK.").is_http and result_code("-").value is None


def test_status64_counted_exactly_in_each_spelling(tmp_path: Path) -> None:
    rows = [
        fw_row(time=f"10:00:{i:02d}", status=s)
        for i, s in enumerate(["0x80070040", "0x80070040 ERROR_NETNAME_DELETED", "64", "0x0", "0x80074e20"])
    ]
    (tmp_path / "ISALOG_20240304_FWS_000.w3c").write_text(w3c(FW_FIELDS, rows))
    attrs = overall(probe_json(str(tmp_path)))
    assert attrs["records"] == 5 and attrs["status64_count"] == 3 and attrs["status64_server_leg"] == 3


# ------------------------------------------------------------------ W3C layout handling


def test_reordered_fields_and_header_change_mid_file(tmp_path: Path) -> None:
    reordered = list(reversed(FW_FIELDS))
    text = (
        w3c(FW_FIELDS, [fw_row()])
        + "#Fields: "
        + "\t".join(reordered)
        + "\n"
        + "\n".join([fw_row(fields=reordered), fw_row(status="0x0", action="Establish", fields=reordered)])
        + "\n"
    )
    path = tmp_path / "fw.w3c"
    path.write_text(text)
    attrs = overall(probe_json(str(path)))
    assert attrs["records"] == 3 and attrs["status64_count"] == 2 and attrs["bad_lines"] == 0


def test_absent_and_dash_fields(tmp_path: Path) -> None:
    few = ["date", "time", "destination", "action", "status"]
    rows = ["2024-03-04\t10:00:00\t10.0.0.20:443\tFailed\t0x80070040", "2024-03-04\t10:00:01\t-\t-\t-"]
    path = tmp_path / "fw.w3c"
    path.write_text(w3c(few, rows))
    attrs = overall(probe_json(str(path)))
    assert attrs["records"] == 2 and attrs["status64_count"] == 1


def test_truncated_last_line_and_binary_garbage(tmp_path: Path) -> None:
    rows = [fw_row(), fw_row(status="0x0", action="Establish")]
    good = w3c(FW_FIELDS, rows).encode()
    garbage = b"\x00\x17\xff\xfe\x01binary\x02\x03" * 4 + b"\n"
    path = tmp_path / "fw.w3c"
    path.write_bytes(good + garbage + fw_row(time="10:00:05").encode() + b"\n" + fw_row()[:40].encode())
    proc = run_cli("probe", "logs", str(path), "--format", "json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    attrs = overall(doc)
    garbage_line = good.count(b"\n") + 1
    assert attrs["records"] == 3 and attrs["status64_count"] == 2
    assert attrs["bad_lines"] == 2 and attrs["truncated_lines"] == 1 and attrs["partial"] is True
    assert f"{path}:{garbage_line}" in attrs["bad_line_samples"]
    assert f"{path}:{garbage_line}: binary garbage skipped" in proc.stderr
    assert doc["probe"]["status"] == "partial"


@pytest.mark.parametrize("encoding", ["crlf", "utf-8-sig", "utf-16", "utf-16-le-nobom", "cp1252"])
def test_encodings(tmp_path: Path, encoding: str) -> None:
    rows = [fw_row(rule="Publication Exchange é"), fw_row(status="0x0", action="Establish")]
    text = w3c(FW_FIELDS, rows, eol="\r\n" if encoding != "cp1252" else "\n")
    path = tmp_path / "fw.w3c"
    data = {
        "crlf": text.encode(),
        "utf-8-sig": text.encode("utf-8-sig"),
        "utf-16": text.encode("utf-16"),
        "utf-16-le-nobom": text.encode("utf-16-le"),
        "cp1252": text.encode("cp1252"),
    }[encoding]
    path.write_bytes(data)
    doc = probe_json(str(path))
    attrs = overall(doc)
    assert attrs["records"] == 2 and attrs["status64_count"] == 1 and attrs["bad_lines"] == 0
    assert by_subject(doc, "rule:Publication Exchange é")["status64_count"] == 1


# ------------------------------------------------------------------ the other formats


def test_web_proxy_coincidence_outlook_anywhere_and_legs(tmp_path: Path) -> None:
    rows = [
        web_row(
            time="10:00:00",
            status="64",
            action="Failed",
            method="RPC_IN_DATA",
            uri="https://mail.contoso.com/rpc/rpcproxy.dll?cas01:6001",
            taken="900000",
        ),
        web_row(time="10:00:20", status="502", action="Failed"),
        web_row(
            time="10:30:00",
            cip="203.0.113.9",
            status="64",
            action="Failed",
            method="RPC_OUT_DATA",
            uri="https://mail.contoso.com/rpc/rpcproxy.dll?cas01:6002",
            taken="100",
        ),
        web_row(time="10:31:00", cip="203.0.113.9", status="12209", action="Denied"),
        web_row(time="10:32:00", status="10061", action="Failed"),
    ]
    path = tmp_path / "ISALOG_20240304_WEB_000.w3c"
    path.write_text(w3c(WEB_FIELDS, rows))
    doc = probe_json(str(path), "--internal", "10.0.0.20")
    attrs = overall(doc)
    assert attrs["status64_count"] == 2 and attrs["status64_with_client_error"] == 1
    assert attrs["outlook_anywhere"] == 2 and attrs["outlook_anywhere_long"] == 1
    assert attrs["refused"] == 1 and attrs["status64_server_leg"] == 2
    server = by_subject(doc, "server:10.0.0.20")
    assert server["status64_count"] == 2 and server["connections"] == 5 and server["status64_share"] == 0.4
    assert attrs["samples"] == [f"{path}:5", f"{path}:7"]
    assert doc["excerpts"][f"{path}:5"].startswith("198.51.100.7\t")


def test_client_leg_from_tmg_address(tmp_path: Path) -> None:
    fields = [f for f in FW_FIELDS if f not in ("source network", "destination network")]
    rows = [
        fw_row(src="198.51.100.7:50000", dst="192.0.2.10:443", fields=fields),
        fw_row(src="192.0.2.10:40000", dst="10.0.0.20:443", fields=fields),
    ]
    path = tmp_path / "fw.w3c"
    path.write_text(w3c(fields, rows))
    attrs = overall(probe_json(str(path), "--tmg", "192.0.2.10"))
    assert attrs["status64_client_leg"] == 1 and attrs["status64_server_leg"] == 1


def test_isa_text_format_with_local_time(tmp_path: Path) -> None:
    def row(time: str, action: str, status: str) -> str:
        values = [
            "TMG01",
            "3/4/2024",
            time,
            "TCP",
            "10.0.0.1:50000",
            "10.0.0.20:443",
            "198.51.100.7",
            "Local Host",
            "Internal",
            action,
            status,
            "Publish OWA",
            "HTTPS Server",
            "-",
            "0",
            "0",
            "0",
            "0",
            "1500",
            "0",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
        ]
        return ", ".join(values)

    path = tmp_path / "ISALOG_20240304_FWS_000.iis"
    path.write_text("\n".join([row("11:00:01", "Failed", "0x80070040"), row("11:00:02", "Establish", "0x0")]) + "\n")
    attrs = overall(probe_json(str(path), "--tz", "Europe/Berlin"))
    assert attrs["records"] == 2 and attrs["status64_count"] == 1
    assert attrs["first_time"] == "2024-03-04T10:00:01Z"  # CET is UTC+1
    assert attrs["formats"] == ["isa-text"]


def test_log_viewer_tab_copy(tmp_path: Path) -> None:
    header = [
        "Log Time",
        "GMT Log Time",
        "Client IP",
        "Destination IP",
        "Destination Port",
        "Source Network",
        "Destination Network",
        "Action",
        "Rule",
        "Result Code",
        "HTTP Status Code",
        "URL",
        "Log Record Type",
    ]
    rows = [
        [
            "04.03.2024 11:00:00",
            "04.03.2024 10:00:00",
            "10.0.0.1",
            "10.0.0.20",
            "443",
            "Local Host",
            "Internal",
            "Failed Connection Attempt",
            "Publish OWA",
            "64 The specified network name is no longer available.",
            "-",
            "-",
            "Web Proxy Filter",
        ],
        [
            "04.03.2024 11:00:01",
            "04.03.2024 10:00:01",
            "10.0.0.1",
            "10.0.0.20",
            "443",
            "Local Host",
            "Internal",
            "Closed Connection",
            "Publish OWA",
            "0x80074e20 FWX_E_GRACEFUL_SHUTDOWN",
            "-",
            "-",
            "Firewall",
        ],
    ]
    path = tmp_path / "live.txt"
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    attrs = overall(probe_json(str(path)))
    assert attrs["records"] == 2 and attrs["status64_count"] == 1 and attrs["connections"] == 1
    assert attrs["first_time"] == "2024-03-04T10:00:00Z" and attrs["status64_server_leg"] == 1


def test_sql_express_csv_export(tmp_path: Path) -> None:
    header = (
        "servername,logTime,protocol,SourceIP,SourcePort,DestinationIP,DestinationPort,OriginalClientIP,"
        "SourceNetwork,DestinationNetwork,Action,resultcode,rule,ApplicationProtocol,GmtLogTime"
    )
    rows = [
        "TMG01,2024-03-04 11:00:00.000,TCP,0A000001-FFFF-0000-0000-000000000000,50000,"
        "0A000014-FFFF-0000-0000-000000000000,443,C6336407-FFFF-0000-0000-000000000000,"
        "Local Host,Internal,10,"
        '-2147024832,"Publish OWA, Exchange",HTTPS Server,2024-03-04 10:00:00.000',
        "TMG01,2024-03-04 11:00:01.000,TCP,0A000001-FFFF-0000-0000-000000000000,50001,"
        "0A000014-FFFF-0000-0000-000000000000,443,C6336407-FFFF-0000-0000-000000000000,"
        "Local Host,Internal,10,"
        '-2147014835,"Publish OWA, Exchange",HTTPS Server,2024-03-04 10:00:01.000',
    ]
    path = tmp_path / "FirewallLog.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    doc = probe_json(str(path))
    attrs = overall(doc)
    assert attrs["records"] == 2 and attrs["status64_count"] == 1 and attrs["refused"] == 1
    assert by_subject(doc, "server:10.0.0.20")["connections"] == 2
    assert by_subject(doc, "rule:Publish OWA, Exchange")["status64_count"] == 1


def test_syslog_relayed_lines(tmp_path: Path) -> None:
    rows = [
        f"<13>Mar  4 10:00:02 TMG01 ISAWebLog\t0\t{web_row(status='64', action='Failed')}",
        f"<13>Mar  4 10:00:03 TMG01 ISAWebLog\t0\t{web_row()}",
    ]
    path = tmp_path / "syslog.log"
    path.write_text("\n".join(rows) + "\n")
    attrs = overall(probe_json(str(path)))
    assert attrs["records"] == 2 and attrs["status64_count"] == 1 and attrs["formats"] == ["syslog"]


def test_gzip_zip_folders_and_globs_in_time_order(tmp_path: Path) -> None:
    day1 = w3c(FW_FIELDS, [fw_row()])
    day2 = w3c(FW_FIELDS, [fw_row(), fw_row(status="0x0", action="Establish")]).replace("2024-03-04", "2024-03-05")
    with gzip.open(tmp_path / "ISALOG_20240305_FWS_000.w3c.gz", "wt") as fh:
        fh.write(day2)
    with zipfile.ZipFile(tmp_path / "old.zip", "w") as archive:
        archive.writestr("ISALOG_20240304_FWS_000.w3c", day1)
    summary, _ = summarise([str(tmp_path)], Site(), 1)
    assert summary.records == 3 and summary.scope("all", "all")["status64_count"] == 2
    assert summary.files[0].endswith("old.zip!ISALOG_20240304_FWS_000.w3c")
    glob_doc = probe_json(str(tmp_path / "*.gz"))
    assert overall(glob_doc)["records"] == 2


def test_not_a_log_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    proc = run_cli("probe", "logs", str(path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"diagnose: error: {path}: not a TMG or ISA Server log (no W3C #Fields header, log-viewer header, "
        "SQL "
        "export header, syslog ISAWebLog/ISAFWSLog tag or ISA text-format record found)"
    ]


def test_byte_ranges_merge_to_the_same_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import diagnose.probes.logs as logs_pkg

    reordered = list(reversed(FW_FIELDS))  # the header changes mid-file: later ranges must follow it
    rows = []
    for i in range(6000):
        status = "0x80070040" if i % 7 == 0 else "0x0"
        rows.append(
            fw_row(
                time=f"10:{i // 600:02d}:{i // 10 % 60:02d}",
                status=status,
                dst=f"10.0.0.{20 + i % 3}:443",
                src=f"10.0.0.1:{40000 + i}",
                fields=FW_FIELDS if i < 3000 else reordered,
            )
        )
    text = w3c(FW_FIELDS, rows[:3000]) + "#Fields: " + "\t".join(reordered) + "\n" + "\n".join(rows[3000:]) + "\n"
    path = tmp_path / "fw.w3c"
    path.write_text(text)
    whole, _ = summarise([str(path)], Site(), 1)
    monkeypatch.setattr(logs_pkg, "SPLIT_AT", 200_000)
    parts, _ = summarise([str(path)], Site(), 2)
    assert whole.records == parts.records == 6000 and whole.bad_lines == parts.bad_lines == 0
    assert whole.scope("all", "all")["status64_count"] == 858
    assert whole.scopes == parts.scopes and whole.s64_minutes == parts.s64_minutes
    assert whole.samples == parts.samples and whole.first_time == parts.first_time


def test_facts_match_their_declared_kinds(tmp_path: Path) -> None:
    path = tmp_path / "fw.w3c"
    path.write_text(w3c(FW_FIELDS, [fw_row(), fw_row(status="0x8007274c"), fw_row(status="0xc0040037")]))
    result, _ = collect(ProbeContext(check="tmg-logs"), {"paths": [str(path)], "jobs": 1})
    fact_kinds().check(result.facts, "probe")
    attrs = result.facts[0].attrs
    assert attrs["timed_out"] == 1 and attrs["flood_denials"] == 1 and attrs["status64_count"] == 1


def test_bursts_and_hourly_buckets(tmp_path: Path) -> None:
    rows = [fw_row(time=f"1{h}:00:00") for h in range(4)]
    rows += [fw_row(time=f"14:10:{s:02d}", src=f"10.0.0.1:{50000 + s}") for s in range(30)]
    path = tmp_path / "fw.w3c"
    path.write_text(w3c(FW_FIELDS, rows))
    attrs = overall(probe_json(str(path)))
    assert attrs["bursts"] == 1 and attrs["burst_minutes"] == ["2024-03-04T14:10:00Z"]
    assert attrs["status64_peak_per_minute"] == 30
    assert attrs["status64_by_hour"][-1] == "2024-03-04T14:00:00Z 30"


def test_computers_and_users_of_looked_at_records_are_named(tmp_path: Path) -> None:
    """The TMG computer and the users of Status 64 / failure records are fact attributes, so the redactor
    knows them as names: a bare user name in a cited line is pseudonymised in a redacted bundle."""
    rows = [
        web_row(time="10:00:00", status="64", action="Failed").replace("anonymous", "jdoe"),
        web_row(time="10:00:05", status="502", action="Failed").replace("anonymous", "mmuster?"),
        web_row(time="10:00:09").replace("anonymous", "quietuser").replace("TMG01", "TMG02"),  # nothing to look at
        web_row(time="10:00:10", status="64", action="Failed").replace("TMG01", "TMG03"),  # anonymous
    ]
    path = tmp_path / "ISALOG_20240304_WEB_000.w3c"
    path.write_text(w3c(WEB_FIELDS, rows))
    attrs = overall(probe_json(str(path)))
    assert attrs["users"] == ["jdoe", "mmuster"]  # "?": sent but not authenticated
    assert attrs["computers"] == ["TMG01", "TMG03"]

    plain, redacted = tmp_path / "plain.json", tmp_path / "redacted.json"
    for out, extra in ((plain, []), (redacted, ["--redact"])):
        proc = run_cli("collect", "--log", str(path), "--offline", "--no-input", "--quiet", "-o", str(out), *extra)
        assert proc.returncode == 0, proc.stderr
    assert "jdoe" in plain.read_text() and "TMG03" in plain.read_text()
    text = redacted.read_text()
    assert "jdoe" not in text and "mmuster" not in text and "TMG01" not in text and "TMG03" not in text
    assert "status64_count" in text


def test_per_server_scopes_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forward-proxy traffic to many Internet destinations gets no per-server scope; published servers
    do, up to MAX_SERVERS, and the rest are counted together."""
    import diagnose.probes.logs.summary as summary_mod

    rows = [
        fw_row(
            dst=f"203.0.113.{i % 250}:{1000 + i}",
            srcnet="Internal",
            dstnet="External",
            status="0x0",
            action="Establish",
            time=f"10:{i // 60 % 60:02d}:{i % 60:02d}",
        )
        for i in range(500)
    ]
    rows += [fw_row(dst=f"10.0.0.{20 + i % 5}:443", time=f"11:00:{i:02d}") for i in range(50)]
    path = tmp_path / "ISALOG_20240304_FWS_000.w3c"
    path.write_text(w3c(FW_FIELDS, rows))
    whole, _ = summarise([str(path)], Site(), 1)
    servers = {name for kind, name in whole.scopes if kind == "server"}
    assert servers == {f"10.0.0.{20 + i}" for i in range(5)}
    assert whole.scope("all", "all")["connections"] == 550  # the forward traffic is still counted
    monkeypatch.setattr(summary_mod, "MAX_SERVERS", 3)
    capped, _ = summarise([str(path)], Site(), 1)
    servers = {name: counts for (kind, name), counts in capped.scopes.items() if kind == "server"}
    assert len(servers) == 4 and summary_mod.SERVERS_BEYOND in servers
    assert sum(c["status64_count"] for c in servers.values()) == 50


@pytest.mark.parametrize("zone", [None, "Europe/Berlin"])
def test_cached_time_conversion_equals_the_plain_one(zone: str | None) -> None:
    """The SQL-export / viewer path caches time conversions per second (fraction cut, ISO times taken
    as they are): on any time text it must give what parsing and converting each one gives."""
    import random

    from diagnose.compat import ZoneInfo
    from diagnose.probes.logs.scan import _utc_stamp, _utc_stamp_of, parse_datetime, to_utc

    tz = ZoneInfo(zone) if zone else None
    rng = random.Random(11)
    texts = ["2024-03-31 01:30:00", "2024-03-31 02:30:00.250", "2024-10-27 02:30:00", "2024-W10-1T10:00:00"]
    for _ in range(3000):
        y, mo, d = rng.choice([2011, 2024]), rng.randint(0, 13), rng.randint(0, 32)
        h, mi, se = rng.randint(0, 25), rng.randint(0, 60), rng.randint(0, 60)
        sep = rng.choice(["-", "/", "."])
        date = f"{y}{sep}{mo:02d}{sep}{d:02d}" if rng.random() < 0.7 else f"{mo}/{d}/{y}"
        tail = rng.choice(["", ".000", ".5", " PM", " AM", ".123 ", "Z", "x"])
        texts.append(f"{date}{rng.choice([' ', 'T'])}{h:02d}:{mi:02d}:{se:02d}{tail}")
    texts += [t + ".999" for t in texts if len(t) == 19]  # the same seconds again, another fraction
    _utc_stamp_of.cache_clear()
    for text in texts + texts:  # the second time round, answers come from the cache
        found = parse_datetime(text)
        moment = to_utc(found, tz) if found else None
        want = (moment.strftime("%Y-%m-%d").encode(), moment.strftime("%H:%M:%S").encode()) if moment else None
        assert _utc_stamp(text, tz) == want, text
    assert _utc_stamp_of.cache_info().hits >= len(texts)


@pytest.mark.parametrize("zone", [None, "America/New_York"])
def test_canonical_records_built_a_column_at_a_time_equal_one_by_one(zone: str | None) -> None:
    """`CanonBuilder.build_batch` (used for SQL exports, viewer copies and ISA text) gives exactly the
    fields `build` gives record by record, for every fixed layout, with times in any shape and SQL
    addresses, and with short records that fall back to one by one."""
    import random

    from diagnose.compat import ZoneInfo
    from diagnose.probes.logs.layout import FIXED_FIREWALL, FIXED_WEB, Layout
    from diagnose.probes.logs.scan import CanonBuilder

    rng = random.Random(3)
    sql = Layout.from_names(
        [
            "servername",
            "logTime",
            "SourceIP",
            "SourcePort",
            "DestinationIP",
            "DestinationPort",
            "Action",
            "resultcode",
            "rule",
            "GmtLogTime",
        ]
    )
    values = [
        "",
        " ",
        "-",
        "TMG01",
        "2024-03-04 10:00:00.123",
        "3/4/2024 10:00:01 PM",
        "28.09.2011 23:59:59",
        "2024-02-30 10:00:00",
        "167772180",
        "0A000014-FFFF-0000-0000-000000000000",
        "10.0.0.5:443",
        "443",
        "fe80::1",
        "Failed Connection Attempt",
        "0x80070040",
        "Publish OWA, Exchange",
    ]
    for layout in [sql, *FIXED_FIREWALL.values(), *FIXED_WEB.values()]:
        builder = CanonBuilder(layout, ZoneInfo(zone) if zone else None, local=True)
        for short in (False, True):
            rows = [[rng.choice(values) for _ in range(layout.width)] for _ in range(300)]
            if short:
                rows[7] = rows[7][: layout.width // 2]
            want = [field for row in rows for field in builder.build(row)]
            assert builder.build_batch(rows) == want, (layout.names[:3], short)


def test_times_kept_for_the_coincidence_check_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory must not grow with the number of Status 64 entries: beyond MAX_EVENT_TIMES their times are
    not kept, they are counted as unchecked, and the problem is said; one core or two alike."""
    import diagnose.probes.logs as logs_pkg
    import diagnose.probes.logs.summary as summary_mod

    rows = [
        fw_row(time=f"10:{i // 60:02d}:{i % 60:02d}", src=f"10.0.0.1:{40000 + i}", orig=f"198.51.100.{1 + i % 9}")
        for i in range(3000)
    ]
    path = tmp_path / "ISALOG_20240304_FWS_000.w3c"
    path.write_text(w3c(FW_FIELDS, rows))
    whole, _ = summarise([str(path)], Site(), 1)
    assert whole.scope("all", "all")["status64_count"] == 3000 and whole.s64_unchecked == 0
    assert sum(len(t) for t in whole.s64_events.values()) == 3000

    monkeypatch.setattr(summary_mod, "MAX_EVENT_TIMES", 1000)
    monkeypatch.setattr(logs_pkg, "SPLIT_AT", 100_000)
    for jobs in (1, 2):
        capped, problems = summarise([str(path)], Site(), jobs)
        assert capped.scope("all", "all")["status64_count"] == 3000  # still counted
        assert sum(len(t) for t in capped.s64_events.values()) == capped.event_times == 1000
        assert capped.s64_unchecked == 2000
        assert any("1,000 Status 64 entries and client errors were kept" in p for p in problems), problems
        facts, _ = build_facts(capped)
        assert facts[0].attrs["status64_unchecked"] == 2000


def test_sql_export_split_across_cores_gives_the_same_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large SQL-export CSV is cut into byte ranges for the workers, never inside a quoted field
    (here: rule names with commas, quoted quotes, and a user agent holding line breaks)."""
    import diagnose.probes.logs as logs_pkg

    header = (
        "servername,logTime,protocol,SourceIP,SourcePort,DestinationIP,DestinationPort,OriginalClientIP,"
        "SourceNetwork,DestinationNetwork,Action,resultcode,rule,ClientAgent,GmtLogTime"
    )
    rows = []
    for i in range(4000):
        code = "-2147024832" if i % 5 == 0 else ("-2147014835" if i % 17 == 0 else "0")
        agent = '"Outlook\r\n""MSRPC""\r\nagent"' if i % 3 == 1 else "MSRPC"  # line breaks inside quotes
        if i == 2999:
            agent = "bad,extra"  # one column too many: a bad line with its number
        stamp = f"2024-03-04 10:{i // 60 % 60:02d}:{i % 60:02d}"
        rows.append(
            f"TMG01,{stamp}.000,TCP,0A000001-FFFF-0000-0000-000000000000,{40000 + i},"
            f"0A00001{4 + i % 3}-FFFF-0000-0000-000000000000,443,C6336407-FFFF-0000-0000-000000000000,"
            f'Local Host,Internal,10,{code},"Publish OWA, Exchange",{agent},{stamp}.000'
        )
    path = tmp_path / "FirewallLog.csv"
    path.write_bytes((header + "\r\n" + "\r\n".join(rows) + "\r\n").encode())
    whole, _ = summarise([str(path)], Site(), 1)
    monkeypatch.setattr(logs_pkg, "SPLIT_AT", 20_000)
    units, _ = logs_pkg.plan_units(logs_pkg.expand([str(path)])[0], 2)
    assert len(units) > 10 and {u.format for u in units} == {"sql-csv"}
    data = path.read_bytes()
    assert all(data[: u.start].count(b'"') % 2 == 0 for u in units)  # no cut inside a quoted field
    parts, _ = summarise([str(path)], Site(), 2)
    assert whole.records == parts.records == 3999 and whole.bad_lines == parts.bad_lines == 1
    assert whole.bad_samples == parts.bad_samples
    assert whole.scopes == parts.scopes and whole.samples == parts.samples
    assert whole.code_samples == parts.code_samples and whole.s64_minutes == parts.s64_minutes
    assert whole.scope("all", "all")["status64_count"] == 800 and whole.files == parts.files


def test_timeline_counts_status64_and_client_failures_per_minute(tmp_path: Path) -> None:
    """The report's timeline: Status 64 and client-visible failures (a 502 to the client) per minute and
    per hour; per minute only while every entry falls within 6 hours."""
    rows = [
        web_row(time="10:00:05", status="64", action="Failed"),
        web_row(time="10:00:40", status="64", action="Failed"),
        web_row(time="10:00:50", status="502", action="Failed"),
        web_row(time="10:07:00", status="64", action="Failed"),
        web_row(time="11:15:00", cip="203.0.113.9", status="502", action="Failed"),
        web_row(time="11:20:00", status="200"),
    ]
    path = tmp_path / "ISALOG_20240304_WEB_000.w3c"
    path.write_text(w3c(WEB_FIELDS, rows))
    attrs = overall(probe_json(str(path), "--internal", "10.0.0.20"))
    assert attrs["status64_by_minute"] == ["2024-03-04T10:00:00Z 2", "2024-03-04T10:07:00Z 1"]
    assert attrs["client_errors_by_minute"] == ["2024-03-04T10:00:00Z 1", "2024-03-04T11:15:00Z 1"]
    assert attrs["client_errors_by_hour"] == ["2024-03-04T10:00:00Z 1", "2024-03-04T11:00:00Z 1"]
    assert attrs["status64_by_hour"] == ["2024-03-04T10:00:00Z 3"]
    # a failure seven hours later: the span is too long for minutes, the hours stay
    path.write_text(w3c(WEB_FIELDS, [*rows, web_row(time="17:30:00", status="502", action="Failed")]))
    attrs = overall(probe_json(str(path), "--internal", "10.0.0.20"))
    assert "status64_by_minute" not in attrs and "client_errors_by_minute" not in attrs
    assert attrs["client_errors_by_hour"][-1] == "2024-03-04T17:00:00Z 1"


@pytest.mark.parametrize("bad_time", ["99999:00:00", "24:00:00", "10:60:00", "-1:00:00", "10:00:nan", "10:00:1e999"])
def test_a_time_that_is_no_time_of_day_is_counted_but_not_placed_in_time(tmp_path: Path, bad_time: str) -> None:
    # found by the fuzz suite: a damaged hour became an epoch in the year 10172, and the timeline crashed
    rows = [fw_row(time=bad_time), fw_row(time="10:00:05"), fw_row(time="10:00:06", status="0x0", action="Closed")]
    path = tmp_path / "fw.w3c"
    path.write_text(w3c(FW_FIELDS, rows))
    attrs = overall(probe_json(str(path)))
    assert attrs["records"] == 3 and attrs["status64_count"] == 2
    assert attrs["status64_by_minute"] == ["2024-03-04T10:00:00Z 1"]  # only the readable time is drawn
