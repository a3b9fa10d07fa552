"""The log probe's block reader: the figures must not depend on where blocks are cut.

A W3C log is read in blocks of whole lines (a reused buffer, grown for a line longer than it), and a
clean block is split into columns in one go; a block holding a header, a damaged line or a line
with the wrong number of fields is read line by line. These tests write logs in the product's
format and check exact figures, and that they are the same whatever the block size, down to blocks
smaller than one line. Each runs twice: with the C accelerator and in pure Python.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import diagnose.probes.logs.scan as scan
from diagnose.probes.logs import summarise
from diagnose.probes.logs.scan import Site
from diagnose.probes.logs.summary import LogSummary
from tests.probes.logs.test_scan import FW_FIELDS, WEB_FIELDS, fw_row, w3c, web_row


@pytest.fixture(autouse=True, params=["accelerated", "pure-python"])
def scan_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs on both paths: the C accelerator (when built) and pure Python."""
    if request.param == "pure-python":
        monkeypatch.setattr(scan, "_fastscan", None)
    elif scan._fastscan is None:
        pytest.skip("the C accelerator is not built here")
    return str(request.param)


def _firewall_log(path: Path) -> dict[str, int]:
    """A firewall log with a header change, a damaged pair of lines and a garbage line; returns
    the figures it must give and the line numbers of its bad lines."""
    reordered = list(reversed(FW_FIELDS))  # same width: only its #Fields line tells it apart
    rows: list[str] = []
    s64 = refused = 0
    for i in range(1500):
        fields = FW_FIELDS if i < 800 else reordered
        if i % 9 == 0:
            status, action = "0x80070040", "Failed"
            s64 += 1
        elif i % 50 == 1:
            status, action = "0x8007274d", "Failed"
            refused += 1
        else:
            status, action = "0x0", "Establish"
        rows.append(
            fw_row(
                time=f"10:{i // 60 % 60:02d}:{i % 60:02d}",
                status=status,
                action=action,
                dst=f"10.0.0.{20 + i % 3}:443",
                src=f"10.0.0.1:{40000 + i}",
                orig=f"198.51.100.{1 + i % 40}",
                fields=fields,
            )
        )
    head = w3c(FW_FIELDS, rows[:800])
    header_lines = head.count("\n") - 800
    # line 100 of the records gains a field and line 101 loses one: together they hold the right
    # number of TABs, each alone is damaged
    long_row = rows[100] + "\textra"
    short_row = rows[101].rsplit("\t", 1)[0]
    text_rows = [*rows[:100], long_row, short_row, *rows[102:800]]
    text = w3c(FW_FIELDS, text_rows) + "#Fields: " + "\t".join(reordered) + "\n"
    garbage_at = text.count("\n") + 1 + 300
    later = [*rows[800:1100], "\x01\x02garbage\x03", *rows[1100:]]
    text += "\n".join(later) + "\n"
    path.write_bytes(text.encode())
    dropped_s64 = sum(1 for i in (100, 101) if i % 9 == 0)
    return {
        "records": 1500 - 2,
        "status64": s64 - dropped_s64,
        "refused": refused - sum(1 for i in (100, 101) if i % 50 == 1),
        "bad_long": header_lines + 101,
        "bad_short": header_lines + 102,
        "bad_garbage": garbage_at,
    }


def _same(a: LogSummary, b: LogSummary) -> None:
    assert a.records == b.records and a.bad_lines == b.bad_lines and a.lines == b.lines
    assert a.scopes == b.scopes and a.action_status == b.action_status
    assert a.s64_minutes == b.s64_minutes and a.s64_actions == b.s64_actions
    assert a.s64_events == b.s64_events and a.failure_events == b.failure_events
    assert a.samples == b.samples and a.code_samples == b.code_samples and a.notes == b.notes
    assert (a.first_time, a.last_time) == (b.first_time, b.last_time)
    assert (a.outlook_anywhere, a.outlook_anywhere_long) == (b.outlook_anywhere, b.outlook_anywhere_long)


@pytest.mark.parametrize("block", [64, 1000, 4096])
def test_firewall_figures_do_not_depend_on_the_block_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    path = tmp_path / "ISALOG_20240304_FWS_000.w3c"
    expected = _firewall_log(path)
    whole, _ = summarise([str(path)], Site(), 1)
    total = whole.scope("all", "all")
    assert whole.records == expected["records"]
    assert total["status64_count"] == expected["status64"] and total["refused"] == expected["refused"]
    assert whole.bad_lines == 3 and whole.truncated == 0
    assert [line for _, line in whole.bad_samples] == [
        expected["bad_long"],
        expected["bad_short"],
        expected["bad_garbage"],
    ]
    assert sum(whole.s64_minutes.values()) == expected["status64"]
    assert sum(len(times) for times in whole.s64_events.values()) == expected["status64"]
    monkeypatch.setattr(scan, "BLOCK", block)  # blocks cut everywhere, even inside a line
    cut, _ = summarise([str(path)], Site(), 1)
    _same(whole, cut)


def test_web_figures_do_not_depend_on_the_block_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = []
    for i in range(900):
        time = f"11:{i // 60 % 60:02d}:{i % 60:02d}"
        cip = f"198.51.100.{1 + i % 25}"
        if i % 5 == 0:  # an Outlook Anywhere channel, long or short, sometimes ended by Status 64
            rows.append(
                web_row(
                    time=time,
                    cip=cip,
                    method="RPC_OUT_DATA",
                    uri="https://mail.contoso.com/rpc/rpcproxy.dll?cas01:6004",
                    taken=str(30_000 + 1000 * (i % 61)),
                    status="64" if i % 3 == 0 else "200",
                    action="Failed" if i % 3 == 0 else "Allowed",
                )
            )
        elif i % 7 == 0:
            rows.append(web_row(time=time, cip=cip, status="502", action="Failed"))
        else:
            rows.append(web_row(time=time, cip=cip, uri="https://mail.contoso.com/RPC/RpcProxy.dll?x"))
    path = tmp_path / "ISALOG_20240304_WEB_000.w3c"
    path.write_text(w3c(WEB_FIELDS, rows, eol="\r\n"))
    whole, _ = summarise([str(path)], Site(), 1)
    oa = [i for i in range(900) if i % 5 == 0]
    assert whole.records == 900 and whole.bad_lines == 0
    assert whole.scope("all", "all")["status64_count"] == sum(1 for i in oa if i % 3 == 0)
    failed = [i for i in range(900) if i % 5 and i % 7 == 0]  # 502s, to /owa/
    # the rest use an RPC method or name rpcproxy.dll in their URI (in another case)
    assert whole.outlook_anywhere == 900 - len(failed)
    # only the RPC channels stayed open a minute or more; the other requests took 15 ms
    assert whole.outlook_anywhere_long == sum(1 for i in oa if 30_000 + 1000 * (i % 61) >= 60_000)
    assert sum(len(t) for t in whole.failure_events.values()) == len(failed)
    assert (whole.first_time, whole.last_time) == ("2024-03-04T11:00:00Z", "2024-03-04T11:14:59Z")
    monkeypatch.setattr(scan, "BLOCK", 300)
    cut, _ = summarise([str(path)], Site(), 1)
    _same(whole, cut)


def test_a_line_longer_than_the_buffer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    long_agent = "Mozilla/5.0 " + "x" * 5000
    rows = [web_row(status="64", action="Failed").replace("Mozilla/4.0 (compatible; MSIE 7.0)", long_agent)]
    rows += [web_row(time=f"10:00:{s:02d}") for s in range(10)]
    path = tmp_path / "web.w3c"
    path.write_text(w3c(WEB_FIELDS, rows))
    monkeypatch.setattr(scan, "BLOCK", 256)
    summary, _ = summarise([str(path)], Site(), 1)
    assert summary.records == 11 and summary.bad_lines == 0
    assert summary.scope("all", "all")["status64_count"] == 1
    assert long_agent in summary.samples[0][2]
