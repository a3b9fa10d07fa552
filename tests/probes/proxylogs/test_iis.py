"""IIS W3C (public samples, and Exchange/ARR logs written in IIS's exact format) and Exchange HttpProxy CSV;
bad input: cut .gz, garbage, truncated last line, an over-long line, a file that is no proxy log."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from diagnose.cli import main
from diagnose.probes import ProbeContext
from diagnose.probes.proxylogs import collect
from diagnose.probes.proxylogs.codes import decode
from diagnose.probes.proxylogs.lines import MAX_LINE

CORPUS = Path(__file__).resolve().parents[3] / ".." / "shared" / "corpus" / "iis-logs"

FIELDS_10 = (
    "#Fields: date time s-sitename s-computername s-ip cs-method cs-uri-stem cs-uri-query s-port "
    "cs-username c-ip cs-version cs(User-Agent) cs(Referer) cs-host sc-status sc-substatus "
    "sc-win32-status sc-bytes cs-bytes time-taken"
)
FIELDS_85 = (
    "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip "
    "cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken"
)


def _row10(
    time: str, site: str, method: str, stem: str, query: str, status: str, sub: str, win32: str, taken: int
) -> str:
    return (
        f"2024-03-04 {time} {site} CAS01 10.0.0.5 {method} {stem} {query} 443 CONTOSO\\alice 203.0.113.7 "
        f"HTTP/1.1 Apple-iPhone/1904.1 - mail.contoso.test {status} {sub} {win32} 412 735 {taken}"
    )


def exchange_log() -> str:
    """An Exchange front end (W3SVC1) with ARR errors, written as IIS 10 writes it (CRLF), the header
    written again mid-file by a restart with a narrower field set."""
    eas = "/Microsoft-Server-ActiveSync/default.eas"
    rows = [
        "#Software: Microsoft Internet Information Services 10.0",
        "#Version: 1.0",
        "#Date: 2024-03-04 00:00:01",
        FIELDS_10,
        _row10(
            "00:00:01",
            "W3SVC1",
            "POST",
            eas,
            "Cmd=Ping&User=alice&DeviceId=A1&DeviceType=iPhone",
            "200",
            "0",
            "0",
            1_740_123,
        ),
        _row10(
            "00:00:02",
            "W3SVC1",
            "POST",
            eas,
            "Cmd=Ping&User=bob&DeviceId=B1&DeviceType=iPhone",
            "200",
            "0",
            "64",
            600_050,
        ),
        _row10(
            "00:00:03",
            "W3SVC1",
            "RPC_IN_DATA",
            "/rpc/rpcproxy.dll",
            "cas01.contoso.test:6001",
            "200",
            "0",
            "1236",
            900_000,
        ),
        _row10(
            "00:00:04",
            "W3SVC1",
            "RPC_OUT_DATA",
            "/rpc/rpcproxy.dll",
            "cas01.contoso.test:6001",
            "200",
            "0",
            "0",
            900_000,
        ),
        _row10("00:00:05", "W3SVC1", "GET", "/owa/", "-", "502", "3", "12002", 120_004),
        _row10("00:00:06", "W3SVC1", "GET", "/owa/", "-", "502", "3", "2147954402", 120_010),
        _row10(
            "00:00:07", "W3SVC2", "POST", "/mapi/emsmdb/", "MailboxId=x&NotificationWait", "200", "0", "995", 600_000
        ),
        _row10("00:00:08", "W3SVC1", "GET", "/ecp/", "-", "502", "3", "0x80072efe", 30),
        "#Software: Microsoft Internet Information Services 10.0",
        "#Version: 1.0",
        "#Date: 2024-03-04 06:00:00",
        FIELDS_85,
        "2024-03-04 06:00:01 10.0.0.5 GET /owa/ - 443 - 203.0.113.8 Mozilla/5.0 - 200 0 121 15",
        "2024-03-04 06:00:02 10.0.0.5 GET /owa/ - 443 - 203.0.113.8 Mozilla/5.0 - 200 0 0 15",
    ]
    return "\r\n".join(rows) + "\r\n"


def _collect(paths: list[Path]) -> tuple[Any, list[str]]:
    return collect(ProbeContext(), {"paths": [str(p) for p in paths]})


def _by(result: Any) -> dict[str, Any]:
    return {f.subject: f for f in result.facts}


def _counts(values: tuple[str, ...]) -> dict[str, int]:
    return {v.rsplit(" ", 1)[0]: int(v.rsplit(" ", 1)[1]) for v in values}


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus is not here")
def test_public_iis_samples_exact_counts() -> None:
    files = sorted(CORPUS.glob("*.log"))
    result, problems = _collect(files)
    fact = _by(result)["iis:all"]
    records = sum(1 for f in files for ln in f.read_text().splitlines() if ln.strip() and not ln.startswith("#"))
    assert fact.get("records") == records and not problems
    sixty_four = sum(
        1
        for f in files
        for ln in f.read_text().splitlines()
        if not ln.startswith("#") and ln.split()[-2 if "W3SVC" not in ln else -4] == "64"
    )
    assert _counts(fact.get("code_counts"))["64 ERROR_NETNAME_DELETED"] == sixty_four == fact.get("connection_closed")
    for cite in fact.get("samples"):
        path, line = cite.split(" ", 1)[1].rsplit(":", 1)
        assert " 64 " in Path(path).read_text().splitlines()[int(line) - 1]


def test_exchange_arr_log(tmp_path: Path) -> None:
    log = tmp_path / "u_ex240304.log"
    log.write_bytes(exchange_log().encode())
    result, problems = _collect([log])
    by = _by(result)
    fact = by["iis:all"]
    assert result.status.value == "complete", problems
    assert fact.get("records") == 10
    codes = _counts(fact.get("code_counts"))
    assert codes["64 ERROR_NETNAME_DELETED"] == 1 and codes["1236 ERROR_CONNECTION_ABORTED"] == 1
    assert codes["12002 ERROR_WINHTTP_TIMEOUT"] == 1 and codes["2147954402 ERROR_WINHTTP_TIMEOUT"] == 1
    assert codes["0x80072efe ERROR_WINHTTP_CONNECTION_ERROR"] == 1 and codes["121 ERROR_SEM_TIMEOUT"] == 1
    assert codes["995 ERROR_OPERATION_ABORTED"] == 1
    assert _counts(fact.get("status_counts"))["502.3"] == 3 == fact.get("arr_502_3")
    assert fact.get("timed_out") == 3 and fact.get("connection_closed") == 3 and fact.get("connection_reset") == 1
    assert fact.get("eas_ping") == 2 and fact.get("rpc_in_data") == 1 and fact.get("rpc_out_data") == 1
    assert fact.get("mapi_notificationwait") == 1 and fact.get("long_poll_failed") == 3
    assert {"eas_ping 1740s 1", "eas_ping 600s 1"} <= set(fact.get("long_poll_durations"))
    assert by["iis:site:W3SVC1"].get("records") == 7 and by["iis:site:W3SVC2"].get("records") == 1
    assert fact.get("first_time") == "2024-03-04T00:00:01Z" and fact.get("last_time") == "2024-03-04T06:00:02Z"
    lines = exchange_log().split("\r\n")
    for cite in fact.get("samples"):
        cls, where = cite.split(" ", 1)
        if cls == "arr_502_3":
            assert " 502 3 " in lines[int(where.rsplit(":", 1)[1]) - 1]


def test_gz_and_zip_give_the_same_counts(tmp_path: Path) -> None:
    plain = tmp_path / "plain" / "u_ex240304.log"
    plain.parent.mkdir()
    plain.write_bytes(exchange_log().encode())
    (tmp_path / "u_ex240304.log.gz").write_bytes(gzip.compress(plain.read_bytes()))
    with zipfile.ZipFile(tmp_path / "logs.zip", "w") as archive:
        archive.write(plain, "W3SVC1/u_ex240304.log")
    want = _by(_collect([plain])[0])["iis:all"].get("code_counts")
    for given in (tmp_path / "u_ex240304.log.gz", tmp_path / "logs.zip"):
        result, _ = _collect([given])
        assert _by(result)["iis:all"].get("code_counts") == want


def test_httpproxy_csv(tmp_path: Path) -> None:
    header = (
        "#Software: Microsoft Exchange Server\r\n#Version: 15.01.2507.006\r\n#Log-type: HttpProxy Logs\r\n"
        "#Date: 2024-03-04T00:00:00.000Z\r\n#Fields: DateTime,RequestId,MajorVersion,MinorVersion,"
        "BuildVersion,RevisionVersion,ClientRequestId,Protocol,UrlHost,UrlStem,ProtocolAction,"
        "AuthenticationType,IsAuthenticated,AuthenticatedUser,Organization,AnchorMailbox,UserAgent,"
        "ClientIpAddress,ServerHostName,HttpStatus,BackEndStatus,ErrorCode,Method,ProxyAction,TargetServer,"
        "TargetServerVersion,RoutingType,RoutingHint,BackEndCookie,ServerLocatorHost,ServerLocatorLatency,"
        "RequestBytes,ResponseBytes,TargetOutstandingRequests,AuthModulePerfContext,HttpPipelineLatency,"
        "CalculateTargetBackEndLatency,GlsLatencyBreakup,TotalGlsLatency,AccountForestLatencyBreakup,"
        "TotalAccountForestLatency,ResourceForestLatencyBreakup,TotalResourceForestLatency,ADLatency,"
        "SharedCacheLatencyBreakup,TotalSharedCacheLatency,ActivityContextLifeTime,"
        "ModuleToHandlerSwitchingLatency,ClientReqStreamLatency,BackendReqInitLatency,BackendReqStreamLatency,"
        "BackendProcessingLatency,BackendRespInitLatency,BackendRespStreamLatency,ClientRespStreamLatency,"
        "KerberosAuthHeaderLatency,HandlerCompletionLatency,RequestHandlerLatency,"
        "HandlerToModuleSwitchingLatency,ProxyTime,CoreLatency,RoutingLatency,HttpProxyOverhead,"
        "TotalRequestTime,RouteRefresherLatency,UrlQuery,BackEndGenericInfo,GenericInfo,GenericErrors,"
        "EdgeTraceId,DatabaseGuid,UserADObjectGuid,PartitionEndpointLookupLatency,RoutingStatus\r\n"
    )
    width = header.splitlines()[-1].count(",") + 1

    def row(
        when: str,
        protocol: str,
        stem: str,
        action: str,
        status: str,
        backend: str,
        error: str,
        method: str,
        total: int,
        query: str,
        errors: str = "",
    ) -> str:
        values = [""] * width
        values[0], values[7], values[9], values[10] = when, protocol, stem, action
        values[19], values[20], values[21], values[22] = status, backend, error, method
        values[63], values[65], values[68] = str(total), query, errors
        return ",".join(values) + "\r\n"

    body = (
        row(
            "2024-03-04T00:00:01.123Z",
            "Eas",
            "/Microsoft-Server-ActiveSync/default.eas",
            "Ping",
            "200",
            "200",
            "",
            "POST",
            1_740_000,
            "?Cmd=Ping&User=alice",
        )
        + row(
            "2024-03-04T00:00:02.123Z",
            "Eas",
            "/Microsoft-Server-ActiveSync/default.eas",
            "Ping",
            "200",
            "",
            "",
            "POST",
            600_000,
            "?Cmd=Ping&User=bob",
        )
        + row(
            "2024-03-04T00:00:03.456Z",
            "Owa",
            "/owa/",
            "",
            "503",
            "503",
            "12002",
            "GET",
            120_000,
            "",
            '"WebExceptionStatus=Timeout, Message=The operation has timed out"',
        )
        + row(
            "2024-03-04T00:00:04.456Z",
            "Mapi",
            "/mapi/emsmdb/",
            "NotificationWait",
            "200",
            "200",
            "",
            "POST",
            300_000,
            "",
        )
    )
    log = tmp_path / "HttpProxy_2024030400-1.LOG"
    log.write_bytes((header + body).encode())
    result, problems = _collect([log])
    by = _by(result)
    fact = by["exchange-httpproxy:all"]
    assert result.status.value == "complete", problems
    assert fact.get("records") == 4 and fact.get("eas_ping") == 2 and fact.get("mapi_notificationwait") == 1
    assert _counts(fact.get("code_counts")) == {"12002 ERROR_WINHTTP_TIMEOUT": 1}
    assert fact.get("service_unavailable") == 1 and fact.get("timed_out") == 1
    assert by["exchange-httpproxy:protocol:Eas"].get("records") == 2
    assert fact.get("first_time") == "2024-03-04T00:00:01Z"


def test_damaged_inputs_are_partial_and_named(tmp_path: Path) -> None:
    text = exchange_log().encode()
    lines = text.split(b"\r\n")
    lines[5] = lines[5][:40] + b"\x00\x01garbage"  # binary garbage in record 2 (line 6)
    lines.insert(7, b"x" * (MAX_LINE * 3))  # a line far over the bound (line 8)
    damaged = b"\r\n".join(lines).rstrip(b"\r\n")
    damaged = damaged[: damaged.rfind(b" ")]  # the last line cut short, no line end
    log = tmp_path / "u_ex240305.log"
    log.write_bytes(damaged)
    cut = tmp_path / "u_ex240306.log.gz"
    cut.write_bytes(gzip.compress(text)[:-40])
    result, problems = _collect([log, cut])
    fact = _by(result)["iis:all"]
    assert result.status.value == "partial"
    assert fact.get("partial") is True and fact.get("bad_lines") == 3 and fact.get("truncated_lines") == 1
    assert f"{log}:6" in fact.get("bad_line_samples") and f"{log}:8" in fact.get("bad_line_samples")
    assert any(p.startswith(f"{log}:8: line longer than") for p in problems)
    assert any(p.startswith(f"{cut}: could not be read to its end") for p in problems)
    assert fact.get("records") >= 10 - 2  # what could be read is counted


def test_cli_one_error_line_for_a_file_that_is_no_proxy_log(tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("hello\nworld\n")
    run = CliRunner().invoke(main, ["probe", "proxylogs", str(other)])
    assert run.exit_code == 2
    assert run.output.strip().splitlines() == [
        f"diagnose: error: {other}: not a proxy log this probe knows "
        "(no IIS or Exchange HttpProxy #Fields header, and no HAProxy or nginx "
        "access/error record in its first lines)"
    ]


def test_codes_decode_every_spelling() -> None:
    for spelling in ("12002", "0x80072ee2", "0x80072EE2", "2147954402", "-2147012894"):
        code = decode(spelling)
        assert (code.value, code.name, code.group) == (12002, "ERROR_WINHTTP_TIMEOUT", "timed_out")
    assert decode("0x80070040").name == "ERROR_NETNAME_DELETED" and decode("12031").group == "connection_reset"
    assert decode("-").value is None and decode("0x1234abcd").name == ""


def test_iis_daily_logs_in_a_folder_read_in_time_order_once(tmp_path: Path) -> None:
    """IIS's daily u_exYYMMDD.log files (the public samples, one of them gzip'd by an archiving job) in a
    W3SVC1 folder: read oldest first, and a file named again by a glob is not counted twice."""
    from diagnose.probes.proxylogs import summarise

    folder = tmp_path / "W3SVC1"
    folder.mkdir()
    (folder / "u_ex160110.log").write_bytes((CORPUS / "u_ex160110.log").read_bytes())
    (folder / "u_ex100815.log.gz").write_bytes(gzip.compress((CORPUS / "u_ex100815.log").read_bytes()))
    summary, problems = summarise([str(tmp_path / "*" / "u_ex16*.log"), str(folder)])
    assert summary.files == [str(folder / "u_ex100815.log.gz"), str(folder / "u_ex160110.log")], problems
    records = sum(
        1 for f in CORPUS.glob("*.log") for ln in f.read_text().splitlines() if ln.strip() and not ln.startswith("#")
    )
    assert summary.figures[("iis", "all")].records == records


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_logs_read_like_utf8(tmp_path: Path, encoding: str) -> None:
    """IIS writes UTF-16 logs (with a byte order mark) when its log encoding is so set: the same counts,
    samples and line numbers as the UTF-8 log, plain or gzip'd, and a UTF-16 log cut in the middle of a
    character is partial, said so."""
    text = exchange_log().replace("CONTOSO\\alice", "CONTOSO\\ålice")
    utf8 = tmp_path / "u_ex240304.log"
    utf8.write_bytes(text.encode("utf-8"))
    bom = b"\xff\xfe" if encoding.endswith("le") else b"\xfe\xff"
    wide = tmp_path / "u_ex240304-16.log"
    wide.write_bytes(bom + text.encode(encoding))
    packed = tmp_path / "u_ex240304-16.log.gz"
    packed.write_bytes(gzip.compress(wide.read_bytes()))

    def facts(path: Path) -> Any:
        result, problems = _collect([path])
        return (
            [(f.subject, {k: v for k, v in f.attrs.items() if k != "samples"}) for f in result.facts],
            [s.split(" ", 1)[1].rsplit(":", 1)[1] for s in _by(result)["iis:all"].get("samples")],
            problems,
        )

    assert facts(wide) == facts(utf8) == facts(packed)
    cut = tmp_path / "cut.log"
    cut.write_bytes(wide.read_bytes()[:-3])
    result, problems = _collect([cut])
    assert result.status.value == "partial" and any("middle of a UTF-16 character" in p for p in problems), problems
