"""The log scanner's C accelerator against the pure-Python path, which is the reference.

Logs are written in the product's W3C format, then damaged at random (control bytes, stray CRs,
lines with a field too many or too few, blank lines, comments, a header change, a truncated end),
and read both ways, with blocks cut at several sizes. Every figure of the summary must be equal.
The accelerator's own contract (refusing an unclean block without touching the counts, its
arguments checked) is tested directly.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

import pytest

import diagnose.probes.logs.scan as scan
from diagnose.probes.logs import summarise
from diagnose.probes.logs.scan import Site
from diagnose.probes.logs.summary import OA_LONG_MS, LogSummary
from tests.probes.logs.test_scan import FW_FIELDS, WEB_FIELDS, fw_row, w3c, web_row

accelerated = pytest.mark.skipif(scan._fastscan is None, reason="the C accelerator is not built here")


def test_the_accelerator_is_built_in_ci() -> None:
    """CI installs from scratch with a compiler: a silent fall-back to pure Python must not pass there."""
    if not os.environ.get("CI"):
        pytest.skip("only enforced in CI")
    assert scan._fastscan is not None, "diagnose/probes/logs/_fastscan.c was not compiled by the install"


class _Counting:
    """The accelerator, counting the blocks it accepted (so a test knows the fast way was taken)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.real = scan._fastscan
        self.MAX_DETAIL = self.real.MAX_DETAIL  # type: ignore[union-attr]
        self.MAX_WIDTH = self.real.MAX_WIDTH  # type: ignore[union-attr]

    def scan_block(self, *args: object) -> object:
        got = self.real.scan_block(*args)  # type: ignore[union-attr]
        self.accepted += got is not None
        return got


def _both(
    path: Path, monkeypatch: pytest.MonkeyPatch, block: int, site: Site, fast_blocks: bool = True
) -> tuple[LogSummary, LogSummary]:
    monkeypatch.setattr(scan, "BLOCK", block)
    counting = _Counting()
    with monkeypatch.context() as m:
        m.setattr(scan, "_fastscan", counting)
        fast, _ = summarise([str(path)], site, 1)
    assert counting.accepted > 0 or not fast_blocks, "no block was read by the accelerator"
    with monkeypatch.context() as m:
        m.setattr(scan, "_fastscan", None)
        pure, _ = summarise([str(path)], site, 1)
    return fast, pure


def _fields(summary: LogSummary) -> dict[str, object]:
    return dict(vars(summary))


STATUSES = ["0x0", "0x80070040", "64", "ERROR_NETNAME_DELETED", "0x8007274d", "10060", "0x80074e24", "12202"]
TAKEN = ["15", "60000", "59999", " 70000 ", "+60000", "-60000", "6_0000", "60__000", "", "-", "abc", "9" * 30]


def _damaged(rng: random.Random, line: str) -> str:
    kind = rng.randrange(10)
    if kind == 0:  # a control byte somewhere in a field
        at = rng.randrange(len(line))
        return line[:at] + chr(rng.choice([0, 1, 8, 11, 12, 27, 31, 127])) + line[at:]
    if kind == 1:  # a CR that does not end the line
        at = rng.randrange(len(line))
        return line[:at] + "\r" + line[at:]
    if kind == 2:
        return line + "\textra"
    if kind == 3:
        return line.rsplit("\t", 1)[0]
    if kind == 4:
        return ""
    if kind == 5:
        return "   "
    if kind == 6:
        return "#Remark: " + line[:20]
    if kind == 7:
        return line + "\r"  # a CRLF ending on this line only
    if kind == 8:
        return "#" + line  # a comment with as many TABs as a record
    return "\t" * (line.count("\t"))  # the right number of TABs, every field empty


def _firewall_text(rng: random.Random, n: int) -> str:
    reordered = list(reversed(FW_FIELDS))
    lines = []
    for i in range(n):
        fields = FW_FIELDS if i < n // 2 else reordered
        if i == n // 2:
            lines.append("#Fields: " + "\t".join(reordered))
        row = fw_row(
            time=f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}",
            status=rng.choice(STATUSES),
            action=rng.choice(["Failed", "Establish", "Terminate", "Denied", "Failed Connection Attempt"]),
            dst=f"10.0.0.{20 + rng.randrange(4)}:{rng.choice([443, 80])}",
            src=f"10.0.0.1:{rng.randrange(1024, 65536)}",
            orig=f"198.51.100.{rng.randrange(1, 30)}",
            srcnet=rng.choice(["Local Host", "External"]),
            rule=rng.choice(["Publish OWA", "Publish Outlook Anywhere", "-"]),
            fields=fields,
        )
        lines.append(_damaged(rng, row) if rng.random() < 0.03 else row)
    return w3c(FW_FIELDS, lines)


def _web_text(rng: random.Random, n: int) -> str:
    lines = []
    for i in range(n):
        oa = rng.random() < 0.3
        row = web_row(
            time=f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}",
            cip=f"198.51.100.{rng.randrange(1, 30)}",
            status=rng.choice([*STATUSES, "200", "500", "502", "12209"]),
            action=rng.choice(["Allowed", "Failed", "Denied"]),
            method=rng.choice(["RPC_IN_DATA", "RPC_OUT_DATA", "rpc_in_data"]) if oa else "GET",
            uri=rng.choice(
                ["https://mail.contoso.com/rpc/rpcproxy.dll?x", "https://m/RPC/RpcProxy.DLL", "https://m/owa/"]
            ),
            taken=rng.choice(TAKEN),
            rip=f"10.0.0.{20 + rng.randrange(3)}",
        )
        if i % 97 == 5:
            row = row.replace("2024-03-04", "2024-03-05")  # a record of the next day
        lines.append(_damaged(rng, row) if rng.random() < 0.03 else row)
    return w3c(WEB_FIELDS, lines, eol=rng.choice(["\n", "\r\n"]))


@accelerated
@pytest.mark.parametrize("seed", range(12))
def test_random_damaged_logs_give_the_same_summary_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    text = _firewall_text(rng, 1500) if seed % 2 == 0 else _web_text(rng, 1500)
    if seed % 3 == 0:
        text = text.rstrip("\n")[:-7]  # a truncated last line
    path = tmp_path / ("ISALOG_20240304_FWS_000.w3c" if seed % 2 == 0 else "ISALOG_20240304_WEB_000.w3c")
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    site = Site(tmg_addresses=frozenset({"10.0.0.1"}))
    for block in (200, 4096, 1 << 17):
        fast, pure = _both(path, monkeypatch, block, site, fast_blocks=block < 1 << 17)
        assert pure.records > 1000 and pure.bad_lines > 0  # the damage really is there
        assert _fields(fast) == _fields(pure), f"seed {seed}, block {block}"


@accelerated
def test_every_control_byte_sends_its_line_to_bad_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A line with a control byte but the right number of fields is garbage on both paths: one
    damaged line among clean ones, so the rest of its block is still read the fast way."""
    rows = [fw_row(time=f"10:{s // 60:02d}:{s % 60:02d}") for s in range(100)]
    for c in [*(c for c in range(32) if c not in (9, 10, 13)), 127]:
        damaged = [*rows[:80], rows[80].replace("Publish", f"Pub{chr(c)}lish"), *rows[81:]]
        path = tmp_path / f"ISALOG_20240304_FWS_{c:03d}.w3c"
        path.write_text(w3c(FW_FIELDS, damaged))
        fast, pure = _both(path, monkeypatch, 2048, Site())  # the header's block is not the damaged one
        assert fast.bad_lines == pure.bad_lines == 1, f"control byte {c:#x}"
        assert fast.records == pure.records == 99
        assert _fields(fast) == _fields(pure)


def _clean_block(rows: list[str]) -> bytes:
    return ("\n".join(rows) + "\n").encode()


def _call(block: bytes, counts: Counter[tuple[bytes, ...]] | None, **kw: object) -> tuple[object, ...] | None:
    width = len(FW_FIELDS)
    args: dict[str, object] = {
        "keys": (FW_FIELDS.index("action"), FW_FIELDS.index("status")),
        "date": FW_FIELDS.index("date"),
        "time": FW_FIELDS.index("time"),
        "method": -1,
        "uri": -1,
        "taken": -1,
        "status": FW_FIELDS.index("status"),
        "detail": (b"0x80070040",),
        "detail_all": False,
        "pick": (FW_FIELDS.index("source"),),
        **kw,
    }
    a = args
    return scan._fastscan.scan_block(  # type: ignore[union-attr,no-any-return]
        block, width, a["keys"], counts, a["date"], a["time"], a["method"], a["uri"], a["taken"], OA_LONG_MS,
        a["status"], a["detail"], a["detail_all"], a["pick"],
    )  # fmt: skip


@accelerated
def test_scan_block_counts_picks_and_orders_times() -> None:
    rows = [
        fw_row(time="10:00:05", status="0x0", action="Establish"),
        fw_row(time="09:59:59", status="0x80070040", src="10.0.0.1:1111"),
        fw_row(time="10:00:01", status="0x80070040", src="10.0.0.1:2222"),
    ]
    rows[2] = rows[2].replace("2024-03-04", "2024-03-03")  # the earliest, on the day before
    counts: Counter[tuple[bytes, ...]] = Counter({(b"Failed", b"0x80070040"): 10})
    got = _call(_clean_block(rows).replace(b"\n", b"\r\n"), counts)
    assert got is not None
    lines, new_keys, lo, hi, oa, oa_long, picked, starts, cols = got
    assert lines == 3 and new_keys == 1 and (oa, oa_long) == (0, 0)
    assert counts == Counter({(b"Failed", b"0x80070040"): 12, (b"Establish", b"0x0"): 1})
    assert lo == (b"2024-03-03", b"10:00:01") and hi == (b"2024-03-04", b"10:00:05")
    assert picked == [1, 2] and cols == [[b"10.0.0.1:1111", b"10.0.0.1:2222"]]
    block = _clean_block(rows).replace(b"\n", b"\r\n")
    assert [block[s : s + 4] for s in starts] == [b"TMG0", b"TMG0"] and starts[0] > 0


@accelerated
@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-1],  # no final LF
        lambda b: b.replace(b"Establish", b"Estab\x01lish", 1),
        lambda b: b.replace(b"Establish", b"Estab\rlish", 1),
        lambda b: b + b"#Fields: date\n",
        lambda b: b + b"\n",
        lambda b: b.replace(b"\tTCP\t", b"\tTCP\tx\t", 1),
        lambda b: b.replace(b"\tTCP\t", b"\t", 1),
        lambda b: b"",
    ],
)
def test_an_unclean_block_is_refused_and_changes_nothing(damage: object) -> None:
    block = damage(_clean_block([fw_row(action="Establish", status="0x0"), fw_row()]))  # type: ignore[operator]
    counts: Counter[tuple[bytes, ...]] = Counter({(b"Failed", b"0x80070040"): 3})
    assert _call(block, counts) is None
    assert counts == Counter({(b"Failed", b"0x80070040"): 3})


@accelerated
def test_outlook_anywhere_time_taken_read_as_python_int_reads_it() -> None:
    rows = [web_row(method="RPC_OUT_DATA", taken=t) for t in TAKEN]
    block = _clean_block(rows)
    got = scan._fastscan.scan_block(  # type: ignore[union-attr]
        block, len(WEB_FIELDS), (), None, -1, -1, WEB_FIELDS.index("s-operation"), WEB_FIELDS.index("cs-uri"),
        WEB_FIELDS.index("time-taken"), OA_LONG_MS, -1, None, False, (),
    )  # fmt: skip
    assert got is not None
    assert got[4] == len(TAKEN)
    assert got[5] == sum(1 for t in TAKEN if scan._int(t.encode()) >= OA_LONG_MS)


@accelerated
@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"keys": (99,)}, "keys: column 99"),
        ({"pick": (-1,)}, "pick: column -1"),
        ({"date": 500}, "column 500"),
        ({"keys": tuple(range(17))}, "at most 16"),
    ],
)
def test_scan_block_checks_its_arguments(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _call(_clean_block([fw_row()]), Counter(), **kw)


@accelerated
def test_more_status_values_to_look_at_than_the_accelerator_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_DETAIL distinct status values that need a closer look (here 12xxx client errors), the
    accelerator hands over every record of a block, and the figures stay those of the pure path."""
    assert scan._fastscan is not None
    wanted = scan._fastscan.MAX_DETAIL + 41  # odd: every value turns up among the 3 records in 4
    rows = [
        web_row(
            time=f"10:{i // 60 % 60:02d}:{i % 60:02d}",
            cip=f"198.51.100.{1 + i % 50}",
            status=str(20000 + i % wanted) if i % 4 else "64",
            action="Failed",
        )
        for i in range(4 * wanted)
    ]
    path = tmp_path / "ISALOG_20240304_WEB_000.w3c"
    path.write_text(w3c(WEB_FIELDS, rows))
    fast, pure = _both(path, monkeypatch, 4096, Site())
    assert pure.records == 4 * wanted and pure.scope("all", "all")["status64_count"] == wanted
    # nearly every other record failed with a code of its own: a client error to look at
    assert sum(len(t) for t in pure.failure_events.values()) > 3 * (wanted - 10)
    assert _fields(fast) == _fields(pure)


@accelerated
def test_a_header_wider_than_the_accelerator_takes_is_read_the_careful_way(tmp_path: Path) -> None:
    assert scan._fastscan is not None
    names = [*FW_FIELDS, *(f"extra{i}" for i in range(scan._fastscan.MAX_WIDTH))]
    rows = [fw_row(time=f"10:00:{s:02d}", fields=names) for s in range(12)]  # past the header's block
    path = tmp_path / "ISALOG_20240304_FWS_000.w3c"
    path.write_text(w3c(names, rows))
    summary, _ = summarise([str(path)], Site(), 1)
    assert summary.records == 12 and summary.bad_lines == 0
    assert summary.scope("all", "all")["status64_count"] == 12
