"""The readers of files exported on the TMG server: recorded Windows output (tests/data/host, see its
README) in the encodings Windows writes, and cut-off and garbled variants of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from diagnose.errors import InputError
from diagnose.kinds import fact_kinds
from diagnose.probes import ProbeContext
from diagnose.probes.host import exports as host_exports
from diagnose.probes.host.exports import read_host_export

DATA = Path(__file__).resolve().parents[2] / "data" / "host"


def states(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in read_host_export(path).sockets:
        out[s.state] = out.get(s.state, 0) + 1
    return out


def test_netstat_anob_english_owners_ipv6_and_udp() -> None:
    x = read_host_export(DATA / "netstat-anob-en.txt")
    assert (x.kind, x.encoding) == ("netstat", "utf-8")
    assert len(x.sockets) == 16 and x.udp == 3
    assert states(DATA / "netstat-anob-en.txt") == {
        "LISTEN": 5,
        "ESTABLISHED": 5,
        "TIME_WAIT": 4,
        "CLOSE_WAIT": 1,
        "SYN_SENT": 1,
    }
    owners = {(x.sockets[i].local_port, x.sockets[i].remote_port): exe for i, exe in x.owners.items()}
    assert owners[(49163, 443)] == "wspsrv.exe"
    assert owners[(49171, 53)] == "svchost.exe"  # the component line (Dnscache) comes before the executable
    assert (445, None) not in owners  # "Can not obtain ownership information"
    v6 = [s for s in x.sockets if ":" in s.local_addr]
    assert ("fe80::8d4e:2c1a:91f0:7c3e", 49180, "fe80::1", 443, "TIME_WAIT") in [
        (s.local_addr, s.local_port, s.remote_addr, s.remote_port, s.state) for s in v6
    ]
    assert x.first_line == 5  # the first connection line: its facts cite lines 5-...


def test_powershell_utf16_is_the_same_as_cmd_oem() -> None:
    utf16 = read_host_export(DATA / "netstat-ano-ps-utf16.txt")
    oem = read_host_export(DATA / "netstat-anob-en.txt")
    assert utf16.encoding == "utf-16"
    assert utf16.sockets == oem.sockets and utf16.owners == oem.owners


def test_german_netstat_states_are_localised_and_read() -> None:
    x = read_host_export(DATA / "netstat-ano-de-cp850.txt")
    assert x.encoding == "cp850" and not x.unknown_states
    assert states(DATA / "netstat-ano-de-cp850.txt") == {
        "LISTEN": 2,
        "TIME_WAIT": 2,
        "ESTABLISHED": 1,
        "CLOSE_WAIT": 1,
        "FIN_WAIT2": 1,
        "SYN_SENT": 1,
    }


@pytest.mark.parametrize(
    ("name", "encoding"), [("netstat-ano-ru-cp866.txt", "cp866"), ("netstat-ano-zh-cp936.txt", "cp936")]
)
def test_russian_and_chinese_headers_pick_their_code_page(name: str, encoding: str) -> None:
    x = read_host_export(DATA / name)
    assert x.encoding == encoding
    assert states(DATA / name) == {"LISTEN": 2, "TIME_WAIT": 1, "ESTABLISHED": 1}


def test_netsh_dynamicport_english_and_french() -> None:
    en = read_host_export(DATA / "netsh-dynamicport-tcp-en.txt")
    fr = read_host_export(DATA / "netsh-dynamicport-tcp-fr-cp850.txt")
    assert en.port_range is not None and (en.port_range.low, en.port_range.high, en.port_range.size) == (
        49152,
        65535,
        16384,
    )
    assert fr.encoding == "cp850" and fr.port_range is not None
    assert (fr.port_range.low, fr.port_range.high) == (60000, 65535)
    assert fr.port_range.source.endswith("netsh-dynamicport-tcp-fr-cp850.txt:4")


def test_event_viewer_csv_multi_line_descriptions() -> None:
    x = read_host_export(DATA / "events-system-eventviewer.csv")
    assert [(e.event_id, e.line) for e in x.events] == [(4231, 2), (4227, 3), (4231, 5)]
    assert x.other_events == 2  # the Service Control Manager row and the three-line DCOM row


@pytest.mark.parametrize(
    "name", ["events-system-wevtutil.xml", "events-system-eventviewer.xml", "events-system-wevtutil.txt"]
)
def test_event_xml_and_text(name: str) -> None:
    x = read_host_export(DATA / name)
    ids = sorted(e.event_id for e in x.events)
    assert ids in ([4227, 4231, 4231], [4227, 4231])
    assert {e.computer for e in x.events} == {"TMG01.contoso.local"}
    assert x.other_events == 0 and not x.partial


def test_probe_facts_follow_the_fact_kinds() -> None:
    result = host_exports.probe_exports(
        ProbeContext(check="host-exports"),
        {
            "exports": [
                str(DATA / "netstat-anob-en.txt"),
                str(DATA / "events-system-wevtutil.txt"),
                str(DATA / "netsh-dynamicport-tcp-fr-cp850.txt"),
            ],
            "server_addresses": ["10.0.0.10"],
        },
    )
    assert result.status.value == "complete"
    kinds = fact_kinds()
    for fact in result.facts:
        kinds.check([fact], "probe_exports")
    usage = next(f for f in result.facts if f.kind == "host.port_usage")
    assert usage.attrs["range_low"] == 60000 and usage.attrs["in_use"] == 0  # no socket from 60000 up
    assert usage.attrs["time_wait_delay_source"] == "windows-default"
    leg = next(f for f in result.facts if f.kind == "host.tcp_states" and f.attrs.get("leg") == "server")
    assert leg.attrs["time_wait"] == 3 and leg.attrs["process"] == "wspsrv.exe"
    assert leg.provenance.source == str(DATA / "netstat-anob-en.txt") and leg.provenance.location == "lines 5-41"
    events = {f.subject: f.attrs for f in result.facts if f.kind == "host.tcpip_event"}
    assert events["event:4231"]["count"] == 2 and events["event:4227"]["count"] == 1
    assert events["event:4231"]["samples"][0].endswith("events-system-wevtutil.txt:1")


# ------------------------------------------------------------------ cut off, garbled, hostile


def test_csv_cut_inside_a_description_is_partial(tmp_path: Path) -> None:
    text = (DATA / "events-system-eventviewer.csv").read_bytes()
    cut = tmp_path / "events.csv"
    cut.write_bytes(text[: text.index(b"with CLSID")])
    x = read_host_export(cut)
    assert [e.event_id for e in x.events] == [4231, 4227, 4231]
    assert x.partial.startswith(f"{cut}:6:")


def test_xml_cut_off_is_partial(tmp_path: Path) -> None:
    text = (DATA / "events-system-wevtutil.xml").read_text(encoding="utf-8")
    cut = tmp_path / "events.xml"
    cut.write_text(text[: text.rindex("<Computer>")], encoding="utf-8")
    x = read_host_export(cut)
    assert [e.event_id for e in x.events] == [4231, 4227] and "cut off" in x.partial


def test_wevtutil_text_cut_off_is_partial(tmp_path: Path) -> None:
    text = (DATA / "events-system-wevtutil.txt").read_text(encoding="cp437")
    cut = tmp_path / "events.txt"
    cut.write_text(text[: text.rindex("  Event ID:")], encoding="cp437")
    x = read_host_export(cut)
    assert [e.event_id for e in x.events] == [4231, 4227] and x.partial == f"{cut}:31: last event cut off"


def test_oversized_export_is_read_up_to_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_exports, "MAX_BYTES", 1000)
    x = read_host_export(DATA / "netstat-anob-en.txt")
    assert 0 < len(x.sockets) < 16 and "read only the first" in x.partial


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "host export is empty"),
        (b"\r\n\r\nHello world\r\n", "unrecognised host export 'Hello world'"),
        (b"ElfFile\x00\x01\x00\x00\x00", "binary data, not a text export"),
        (b"<Events><Event><System><EventID>4231</Event></Events>", "not well-formed XML"),
        (b"<!DOCTYPE Events [<!ENTITY a 'b'>]><Events/>", "not well-formed XML"),
        (
            b"Event[0]:\r\n  Log Name: System\r\n  Description: x\r\nEvent[1]:\r\n  Source: Tcpip\r\n  Event ID: 4231\r\n",
            "event block without Source and Event ID",
        ),
    ],
)
def test_bad_input_names_file_and_line(tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "export.txt"
    bad.write_bytes(content)
    with pytest.raises(InputError) as caught:
        read_host_export(bad)
    assert message in caught.value.message
    assert caught.value.where is not None and caught.value.where.startswith(str(bad))


def test_cli_probe_host_export_json(cli: Any) -> None:
    done = cli(
        "probe", "host", "--export", str(DATA / "netstat-ano-de-cp850.txt"), "--server", "10.0.0.10", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    overall = next(f for f in doc["facts"] if f["kind"] == "host.tcp_states" and f["subject"] == "all")
    assert overall["attrs"]["time_wait"] == 2 and overall["attrs"]["close_wait"] == 1
    assert doc["probe"]["status"] == "complete"


def test_cli_probe_host_export_missing_file_is_one_line(cli: Any, tmp_path: Path) -> None:
    done = cli("probe", "host", "--export", str(tmp_path / "nope.txt"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"diagnose: error: {tmp_path / 'nope.txt'}: host export not found"]
