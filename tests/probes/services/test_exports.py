"""The export readers, on files in each exact real format (see tests/data/services/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnose.errors import InputError
from diagnose.probes.services.exports import (
    ServiceRecord,
    detect_format,
    parse_sc_qc,
    read_export,
    start_type_from,
    state_from,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "services"


def by_name(records: list[ServiceRecord]) -> dict[str, ServiceRecord]:
    return {r.name: r for r in records}


def test_data_files_keep_their_real_encodings() -> None:
    assert (DATA / "get-service-ps51.csv").read_bytes().startswith(b"\xef\xbb\xbf#TYPE System.ServiceProcess")
    assert b"\r\n" in (DATA / "sc-query-cas2010.txt").read_bytes()
    assert "für".encode("cp850") in (DATA / "sc-queryex-de.txt").read_bytes()


def test_sc_query_with_state_flag_lines() -> None:
    fmt, records = read_export(DATA / "sc-query-cas2010.txt")
    assert fmt == "sc"
    svc = by_name(records)
    assert len(records) == 13
    assert svc["MSExchangeFBA"].state == "stopped"
    assert svc["MSExchangeFBA"].detail == "1 STOPPED"
    assert svc["W3SVC"].state == "running"
    assert svc["W3SVC"].display_name == "World Wide Web Publishing Service"
    assert svc["MSExchangeFBA"].start_type is None  # sc query has no start type; sc qc does
    # the location points at the SERVICE_NAME line of the block
    lines = (DATA / "sc-query-cas2010.txt").read_text().splitlines()
    assert lines[int(svc["MSExchangeFBA"].location.split()[1]) - 1] == "SERVICE_NAME: MSExchangeFBA"


def test_sc_queryex_german_oem_code_page() -> None:
    _, records = read_export(DATA / "sc-queryex-de.txt")
    svc = by_name(records)
    assert svc["MSExchangeFBA"].display_name == "Microsoft Exchange-Dienst für formularbasierte Authentifizierung"
    assert svc["MSExchangeRPC"].state == "stop-pending"
    assert svc["W3SVC"].display_name == "WWW-Publishingdienst"
    assert svc["W3SVC"].state == "running"


def test_sc_qc_start_types() -> None:
    fba = parse_sc_qc((DATA / "sc-qc-msexchangefba.txt").read_text(), "qc")
    w3 = parse_sc_qc((DATA / "sc-qc-w3svc.txt").read_text(), "qc")
    assert fba == {"MSExchangeFBA": ("automatic", "Microsoft Exchange Forms-Based Authentication service")}
    assert w3["W3SVC"][0] == "automatic"  # AUTO_START  (DELAYED)


def test_sc_qc_given_as_an_export_says_it_has_no_state() -> None:
    with pytest.raises(InputError) as err:
        read_export(DATA / "sc-qc-w3svc.txt")
    assert "sc qc" in err.value.message and err.value.where.endswith("sc-qc-w3svc.txt:3")


def test_get_service_csv_with_bom_and_type_line() -> None:
    fmt, records = read_export(DATA / "get-service-ps51.csv")
    assert fmt == "csv"
    svc = by_name(records)
    assert svc["IISADMIN"].name == "IISADMIN"  # the BOM does not stick to the first name or header
    assert svc["MSExchangeFBA"].state == "stopped" and svc["MSExchangeFBA"].start_type == "automatic"
    assert svc["MSExchangeIMAP4"].start_type == "manual"
    assert svc["WAS"].start_type == "manual"
    assert svc["MSExchangeFBA"].location == "line 6"  # #TYPE line 1, header 2, IISADMIN 3, ...
    assert svc["MSExchangeFBA"].host is None  # MachineName "." is this machine, not a name


def test_get_service_csv_german_use_culture_semicolons() -> None:
    _, records = read_export(DATA / "get-service-de-useculture.csv")
    svc = by_name(records)
    assert svc["W3SVC"].display_name == "WWW-Publishingdienst"
    assert svc["MSExchangeFBA"].state == "stopped"
    assert svc["MSExchangeServiceHost"].state == "running"


def test_wmi_csv_reads_state_not_health_status() -> None:
    _, records = read_export(DATA / "win32-service-wmi.csv")
    svc = by_name(records)
    # Win32_Service.Status is "OK" for every row; the running state is in State
    assert svc["MSExchangeFBA"].state == "stopped"
    assert svc["MSExchangeADTopology"].state == "running"
    assert svc["MSExchangeFBA"].start_type == "automatic"  # StartMode "Auto"
    assert svc["MSExchangeFBA"].host == "CAS01"


def test_cim_csv_without_type_line() -> None:
    _, records = read_export(DATA / "win32-service-cim.csv")
    svc = by_name(records)
    assert svc["MSExchangeIS"].state == "stop-pending"  # "Stop Pending", Status "OK"
    assert svc["MSExchangeHM"].state == "stopped"  # Status "Degraded" is health, not state
    assert svc["W3SVC"].host == "CAS02"


def test_json_powershell_51_numbers() -> None:
    fmt, records = read_export(DATA / "get-service-ps51.json")
    assert fmt == "json"
    svc = by_name(records)
    assert svc["MSExchangeFBA"].state == "stopped"  # Status 1
    assert svc["MSExchangeFBA"].start_type == "automatic"  # StartType 2
    assert svc["MSExchangePOP3"].start_type == "manual"  # StartType 3
    assert svc["W3SVC"].state == "running"  # Status 4
    assert svc["MSExchangeFBA"].location == "$[3]"


def test_json_powershell_4_value_count_wrapper() -> None:
    raw = json.loads((DATA / "get-service-ps4-wrapped.json").read_text(encoding="utf-8-sig"))
    assert set(raw) == {"value", "Count"}
    _, records = read_export(DATA / "get-service-ps4-wrapped.json")
    svc = by_name(records)
    assert len(records) == raw["Count"] == 4
    assert svc["MSExchangeProtectedServiceHost"].state == "stopped"
    assert svc["MSExchangeFBA"].start_type is None  # no StartType before .NET 4.6.1
    assert svc["MSExchangeFBA"].location == "$.value[1]"


def test_json_powershell_7_enum_names() -> None:
    _, records = read_export(DATA / "get-service-ps7-enums.json")
    svc = by_name(records)
    assert svc["MSExchangeRPC"].state == "stopped"
    assert svc["W3SVC"].start_type == "automatic"


def test_json_single_object() -> None:
    _, records = read_export(DATA / "get-service-single.json")
    assert [(r.name, r.state, r.start_type) for r in records] == [("MSExchangeFBA", "stopped", "disabled")]


def test_systemctl_show_blocks() -> None:
    fmt, records = read_export(DATA / "systemctl-show.txt")
    assert fmt == "systemd"
    svc = by_name(records)
    assert set(svc) == {"haproxy", "nginx"}  # squid is LoadState=not-found: not installed
    assert svc["haproxy"].state == "stopped" and svc["haproxy"].detail == "failed (failed)"
    assert svc["nginx"].state == "running" and svc["nginx"].start_type == "automatic"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "stopped"),
        (4, "running"),
        ("4", "running"),
        ("Running", "running"),
        ("StopPending", "stop-pending"),
        ("Stop Pending", "stop-pending"),
        ("stop_pending", "stop-pending"),
        (7, "paused"),
        (99, "unknown"),
        (True, "unknown"),
    ],
)
def test_state_numbers_and_names(value: object, expected: str) -> None:
    assert state_from(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2, "automatic"),
        (3, "manual"),
        (4, "disabled"),
        ("Auto", "automatic"),
        ("AutomaticDelayedStart", "automatic"),
        ("Demand", "manual"),
        (10, "automatic"),
        (0, "boot"),
    ],
)
def test_start_type_numbers_and_names(value: object, expected: str) -> None:
    assert start_type_from(value) == expected


# ------------------------------------------------------------------------------- bad input


def test_missing_export_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        read_export(tmp_path / "nope.json")
    assert str(err.value) == f"{tmp_path / 'nope.json'}: services export not found"


def test_truncated_csv_names_the_line(tmp_path: Path) -> None:
    data = (DATA / "get-service-ps51.csv").read_bytes()
    cut = tmp_path / "cut.csv"
    cut.write_bytes(data[: data.index(b'"MSExchangeIS"') + 40])  # the row for MSExchangeIS is cut mid-way
    with pytest.raises(InputError) as err:
        read_export(cut)
    assert err.value.where == f"{cut}:8"
    assert "cut off" in err.value.message


def test_truncated_json_names_the_line(tmp_path: Path) -> None:
    text = (DATA / "get-service-ps51.json").read_text(encoding="utf-8")
    cut = tmp_path / "cut.json"
    cut.write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_export(cut)
    assert err.value.message.startswith("malformed JSON")
    assert err.value.where.startswith(f"{cut}:")
    assert int(err.value.where.rsplit(":", 1)[1]) > 1


def test_sc_block_cut_before_state(tmp_path: Path) -> None:
    text = (DATA / "sc-query-cas2010.txt").read_text()
    cut = tmp_path / "cut.txt"
    cut.write_text(text[: text.index("        STATE", text.index("SERVICE_NAME: W3SVC"))])
    with pytest.raises(InputError) as err:
        read_export(cut)
    assert "W3SVC" in err.value.message and "no STATE" in err.value.message
    line = cut.read_text().splitlines().index("SERVICE_NAME: W3SVC") + 1
    assert err.value.where == f"{cut}:{line}"


def test_sc_block_cut_mid_line(tmp_path: Path) -> None:
    text = (DATA / "sc-query-cas2010.txt").read_text()
    cut = tmp_path / "cut.txt"
    cut.write_text(text[: text.index("SERVICE_NAME: W3SVC") + 80])  # ends inside "        TYPE"
    with pytest.raises(InputError) as err:
        read_export(cut)
    assert "W3SVC" in err.value.message and "cut off" in err.value.message
    assert err.value.where == f"{cut}:{len(cut.read_text().splitlines())}"


def test_unknown_state_word_is_an_error_not_a_guess(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text('"Name","Status","StartType"\n"MSExchangeFBA","Gestoppt","Automatic"\n', encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_export(bad)
    assert err.value.where == f"{bad}:2" and "Gestoppt" in err.value.message


def test_unrecognised_text_and_empty_file(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("\n\nthe services looked fine yesterday\n")
    with pytest.raises(InputError) as err:
        read_export(junk)
    assert err.value.where == f"{junk}:3" and "unrecognised" in err.value.message
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_export(empty)


def test_csv_without_service_columns(tmp_path: Path) -> None:
    other = tmp_path / "procs.csv"
    other.write_text('"ProcessName","Id"\n"wspsrv","2412"\n')
    with pytest.raises(InputError) as err:
        read_export(other)
    assert err.value.where == f"{other}:1" and "not a service export" in err.value.message


def test_utf16_export_from_powershell_redirection(tmp_path: Path) -> None:
    # `Get-Service | ConvertTo-Json > file` in Windows PowerShell writes UTF-16 LE with a BOM
    text = (DATA / "get-service-single.json").read_text(encoding="utf-8")
    f = tmp_path / "u16.json"
    f.write_bytes(text.encode("utf-16"))
    _, records = read_export(f)
    assert records[0].name == "MSExchangeFBA"


def test_detect_format() -> None:
    assert detect_format("[SC] EnumQueryServicesStatus:OpenSCManager FAILED 5:") == "sc"
    assert detect_format('[{"Name": "x"}]') == "json"
    assert detect_format("Id=nginx.service\n") == "systemd"
