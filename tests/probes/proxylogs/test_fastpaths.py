"""The proxy reader's fast ways against its reference, on logs written in each product's format and damaged
at random (garbage and control bytes, stray CRs, CRLF and LF mixed, lines with a field too many or too
few, blank and comment lines, a #Fields change, quoted CSV fields, odd durations of long polls, an
over-long line, product messages, a truncated end):

* the C accelerator (IIS W3C, HttpProxy CSV, HAProxy HTTP, nginx access blocks) against the
  pure-Python path, on whole logs and on single lines mutated at random;
* byte ranges read by worker processes and merged, against one reading in this process.

Facts, cited excerpts and the problems reported must be identical.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from diagnose.probes.inputs import expand
from diagnose.probes.proxylogs import build_facts, haproxy, nginx, parts, summarise, w3c
from diagnose.probes.proxylogs.lines import MAX_LINE
from diagnose.probes.proxylogs.tally import Summary
from diagnose.probes.workers import start_method

IIS_FIELDS = (
    "#Fields: date time s-sitename s-ip cs-method cs-uri-stem cs-uri-query s-port c-ip cs(User-Agent) "
    "sc-status sc-substatus sc-win32-status time-taken"
)
IIS_NARROW = "#Fields: date time cs-method cs-uri-stem cs-uri-query sc-status sc-substatus sc-win32-status time-taken"
CSV_FIELDS = (
    "#Fields: DateTime,RequestId,Protocol,UrlStem,ProtocolAction,HttpStatus,BackEndStatus,ErrorCode,"
    "Method,TotalRequestTime,UrlQuery,GenericErrors"
)
REQUESTS = (
    ("POST", "/Microsoft-Server-ActiveSync/default.eas", "Cmd=Ping&User=u{n}", "Ping"),
    ("RPC_IN_DATA", "/rpc/rpcproxy.dll", "cas{n}:6001", ""),
    ("RPC_OUT_DATA", "/rpc/rpcproxy.dll", "-", ""),
    ("POST", "/mapi/emsmdb/", "mailboxId=x{n}", "NotificationWait"),
    ("GET", "/owa/", "-", ""),
    ("GET", "/ecp/", "-", ""),
    ("POST", "/Microsoft-Server-ActiveSync/", "Cmd=Sync", "Sync"),
)
STATUSES = (
    ("200", "0", "0"),
    ("200", "0", "64"),
    ("502", "3", "12002"),
    ("502", "3", "0x80072efe"),
    ("503", "0", "1236"),
    ("304", "0", "0"),
    ("500", "0", "-2147012894"),
    ("200", "0", "995"),
)


def _taken(rng: random.Random) -> str:
    return rng.choice(("1740000", "600123", "59999", "-", "12x", "", "0", str(rng.randint(0, 3_600_000))))


def iis_line(rng: random.Random, i: int, narrow: bool) -> str:
    method, stem, query, _ = rng.choice(REQUESTS)
    status, sub, win32 = rng.choice(STATUSES)
    when = f"2024-03-04 {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
    if narrow:
        return f"{when} {method} {stem} {query.format(n=i % 7)} {status} {sub} {win32} {_taken(rng)}"
    return (
        f"{when} W3SVC{rng.choice('12')} 10.0.0.5 {method} {stem} {query.format(n=i % 7)} 443 203.0.113.{i % 9} "
        f"Apple-iPhone/1904.1 {status} {sub} {win32} {_taken(rng)}"
    )


def csv_line(rng: random.Random, i: int, narrow: bool) -> str:
    _, stem, query, action = rng.choice(REQUESTS)
    status, _, error = rng.choice(STATUSES)
    backend = rng.choice((status, "", "503"))
    errors = '"Timeout, then closed"' if rng.random() < 0.01 else rng.choice(("", "plain"))
    return (
        f"2024-03-04T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.123Z,{i},{rng.choice(('Eas', 'Mapi', 'Owa'))},"
        f"{stem},{action},{status},{backend},{error if error != '0' else ''},POST,{_taken(rng)},"
        f"?{query.format(n=i % 5)},{errors}"
    )


def haproxy_line(rng: random.Random, i: int, tcp: bool) -> str:
    prefix = rng.choice(("", "Mar  4 00:00:00 lb haproxy[12]: ", "<134>Mar  4 00:00:00 lb haproxy[12]: "))
    client = f"203.0.113.{i % 9}:{40000 + i % 999} [04/Mar/2024:00:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}]"
    if tcp:
        return f"{prefix}{client} fe_tcp be_rpc/cas{i % 3} 0/1/{rng.randint(1, 900000)} 212 {rng.choice(('--', 'cD', 'SD', 'sD', 'CD'))} 0/0/0/0/0 0/0"
    status, term = rng.choice((("200", "----"), ("502", "SH--"), ("504", "sH--"), ("-1", "CD--"), ("503", "SC--")))
    _, stem, query, _ = rng.choice(REQUESTS)
    return (
        f"{prefix}{client} fe~ be_ex/cas{i % 3} 0/0/1/2/{rng.randint(1, 1_800_000)} {status} 123 - - {term} "
        f'1/1/1/1/0 0/0 "POST {stem}?{query.format(n=i % 4)} HTTP/1.1"'
    )


def nginx_line(rng: random.Random, i: int, error: bool) -> str:
    if error:
        event = rng.choice(
            (
                "upstream prematurely closed connection while reading response header from upstream",
                "upstream timed out (110: Connection timed out) while reading upstream",
                "connect() failed (111: Connection refused) while connecting to upstream",
            )
        )
        return (
            f"2024/03/04 00:{i // 60 % 60:02d}:{i % 60:02d} [error] 7#7: *{i} {event}, client: 203.0.113.9, "
            f'server: _, request: "GET / HTTP/1.1", upstream: "http://10.0.0.{i % 3}:443/"'
        )
    _, stem, query, _ = rng.choice(REQUESTS)
    status = rng.choice(("200", "499", "502", "504"))
    rt = rng.choice(("-", "x1")) if rng.random() < 0.01 else f"{rng.randint(0, 1_800_000) / 1000:.3f}"
    return (
        f'203.0.113.{i % 9} - - [04/Mar/2024:00:{i // 60 % 60:02d}:{i % 60:02d} +0000] "POST {stem}?'
        f'{query.format(n=i % 4)} HTTP/1.1" {status} 12 "-" "Outlook" rt={rt} ua="10.0.0.{i % 3}:443" '
        f'us="{status}"'
    )


def damaged(
    rng: random.Random,
    header: list[str],
    line: Callable[[random.Random, int, bool], str],
    count: int,
    switch: str | None = None,
) -> bytes:
    """`count` records (a few in the other layout or format), with damage at random."""
    out: list[bytes] = [h.encode() + b"\r\n" for h in header]
    other = False
    for i in range(count):
        roll = rng.random()
        if switch is not None and roll < 0.002:
            other = not other
            out.append(switch.encode() + b"\r\n" if other else header[-1].encode() + b"\r\n")
            continue
        text = line(rng, i, other if switch is not None else rng.random() < 0.1).encode()
        if roll < 0.01:
            text = text.replace(b" ", b"", 1)  # a field too few (or a record no longer in its format)
        elif roll < 0.02:
            text += b" extra"
        elif roll < 0.025:
            text = text[:5] + bytes([rng.choice((0, 7, 11, 12, 27, 127))]) + text[5:]
        elif roll < 0.03:
            text = text[:9] + b"\r" + text[9:]
        elif roll < 0.033:
            text = b""
        elif roll < 0.036:
            text = b"#Date: 2024-03-04 00:00:00"
        elif roll < 0.04:
            text = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))).replace(b"\n", b"")
        elif roll < 0.042:
            text = b"Proxy fe_ex started."
        elif roll < 0.0425:
            text = b"x" * (MAX_LINE + 10)
        out.append(text + (b"\r\n" if rng.random() < 0.5 else b"\n"))
    tail = line(rng, count, False).encode()
    out.append(tail[: rng.randint(1, len(tail))])  # a truncated last line
    return b"".join(out)


def logs(tmp_path: Path, seed: int) -> list[Path]:
    rng = random.Random(seed)
    made = {
        "u_ex.log": damaged(
            rng,
            ["#Software: Microsoft Internet Information Services 10.0", "#Version: 1.0", IIS_FIELDS],
            iis_line,
            6000,
            IIS_NARROW,
        ),
        "HttpProxy.LOG": damaged(
            rng, ["#Software: Microsoft Exchange Server", "#Log-type: HttpProxy Logs", CSV_FIELDS], csv_line, 5000
        ),
        "haproxy.log": damaged(rng, [], haproxy_line, 5000),
        "access.log": damaged(rng, [], nginx_line, 5000),
    }
    paths = []
    for name, data in made.items():
        path = tmp_path / f"{seed}-{name}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def read(path: Path, jobs: int = 1) -> tuple[Any, ...]:
    summary, problems = summarise([str(path)], jobs)
    facts, excerpts = build_facts(summary)
    return (
        [(f.kind, f.subject, dict(f.attrs), f.provenance.source, f.provenance.location) for f in facts],
        excerpts,
        problems,
    )


def fast_and_pure(
    monkeypatch: pytest.MonkeyPatch, path: Path, module: object, name: str, stand_in: object
) -> tuple[Any, Any]:
    """`read` of `path` with `module.name` replaced by `stand_in` (a counting accelerator), then without
    the accelerator."""
    with monkeypatch.context() as m:
        m.setattr(module, name, stand_in)
        fast = read(path)
    with monkeypatch.context() as m:
        m.setattr(w3c, "_fastproxy", None)
        pure = read(path)
    return fast, pure


class _Counting:
    """The accelerator, counting the blocks it accepted (so a test knows the fast way was taken)."""

    def __init__(self) -> None:
        self.real = w3c._fastproxy
        self.MAX_WIDTH = self.real.MAX_WIDTH  # type: ignore[union-attr]
        self.accepted = 0
        self.added = 0

    def w3c_block(self, *args: object) -> object:
        got = self.real.w3c_block(*args)  # type: ignore[union-attr]
        self.accepted += got is not None
        return got

    def haproxy_block(self, *args: object) -> object:
        return self._seen(self.real.haproxy_block(*args))  # type: ignore[union-attr]

    def nginx_block(self, *args: object) -> object:
        return self._seen(self.real.nginx_block(*args))  # type: ignore[union-attr]

    def _seen(self, got: Any) -> object:
        self.accepted += got is not None
        self.added += got is not None and got[1] is None  # counted into the tally in C
        return got


def test_the_accelerator_is_built_in_ci() -> None:
    if not os.environ.get("CI"):
        pytest.skip("only enforced in CI")
    assert w3c._fastproxy is not None, "diagnose/probes/proxylogs/_fastproxy.c was not compiled by the install"


@pytest.mark.skipif(w3c._fastproxy is None, reason="the C accelerator is not built here")
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_accelerator_and_pure_python_read_damaged_logs_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    monkeypatch.setattr("diagnose.probes.proxylogs.lines.BLOCK", 4096)  # many blocks, clean and not
    for path in logs(tmp_path, seed):
        counting = _Counting()
        fast, pure = fast_and_pure(monkeypatch, path, w3c, "_fastproxy", counting)
        assert counting.accepted > 0, f"{path.name}: no block was read by the accelerator"
        assert fast == pure, path.name
        assert fast[2], f"{path.name}: the damage was not seen"


def test_accelerator_refuses_unclean_blocks() -> None:
    if w3c._fastproxy is None:
        pytest.skip("the C accelerator is not built here")
    block = w3c._fastproxy.w3c_block
    columns = (0, 1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
    assert block(b"a b\nc d\n", " ", 2, columns) == (
        2,
        {(b"a", b"b", b"", b"", "", -1): 1, (b"c", b"d", b"", b"", "", -1): 1},
        (b"", b""),
        (b"", b""),
    )
    for unclean in (b"a b\nc\n", b"a b\n#x y\n", b"a b\nc d", b"a\rb c\n", b"a \x00b\n", b"a b c\n"):
        assert block(unclean, " ", 2, columns) is None, unclean
    assert block(b'a,"b"\n', ",", 2, columns) is None
    with pytest.raises(ValueError):
        block(b"a b\n", " ", 2, (0, 5, -1, -1, -1, -1, -1, -1, -1, -1, -1))


@pytest.mark.parametrize("seed", [4, 5])
def test_byte_ranges_in_workers_read_like_one_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    monkeypatch.setattr(parts, "SPLIT_AT", 64 << 10)
    for path in logs(tmp_path, seed):
        inputs, _ = expand([str(path)])
        assert len(parts.plan(inputs[0], 2)) > 3, path.name
        assert read(path, jobs=2) == read(path, jobs=1), path.name
        if path.name.endswith("u_ex.log"):  # the #Fields change: a range was read again with the right ones
            with parts.Workers(inputs, 2) as workers:
                assert workers.merge(inputs[0], Summary())
            assert workers.again and all(p.state is not None for p in workers.again)


def test_batch_keys_are_the_keys_of_each_record(tmp_path: Path) -> None:
    """HAProxy and nginx records are keyed a batch at a time (each distinct request classified once)."""
    made = logs(tmp_path, 6)
    for path, shape in ((made[2], haproxy.SHAPES[0]), (made[3], nginx.ACCESS_SHAPES[0])):
        assert shape.keys_of is not None
        found = shape.pattern.findall(path.read_bytes().replace(b"\r\n", b"\n"))
        keys = shape.keys_of(found)
        assert len(found) > 3000 and any(key[4] and key[5] >= 0 for key in keys), path.name
        assert keys == list(map(shape.key_of, found)), path.name


def _nginx_variant(rng: random.Random, i: int, _: bool) -> str:
    """An access line, its variables after the user agent named, unnamed or mixed."""
    line = nginx_line(rng, i, False)
    if rng.random() < 0.3:
        line = line.replace("rt=", "").replace("ua=", "")
    if rng.random() < 0.2:
        line += rng.choice(
            (
                " 0.5 10.0.0.1:80",
                " unix:/run/x.sock",
                ' upstream_status="502, 504"',
                " RT=1.5",
                ' ua="-"',
                " [::1]:8080",
                " request_time=+1",
                ' x="a b" 7',
            )
        )
    return line


@pytest.mark.skipif(w3c._fastproxy is None, reason="the C accelerator is not built here")
@pytest.mark.parametrize("product", ["haproxy", "nginx"])
def test_accelerator_reads_lines_as_the_regular_expression_does(product: str) -> None:
    """Record lines mutated at random (blanks, brackets, colons, slashes, digits, quotes, equals...):
    the accelerator takes a line exactly when the product's expression matches it, with the same key
    and time, or leaves it to the careful way (a value it does not read as Python does)."""
    accelerator = getattr(w3c._fastproxy, f"{product}_block")
    shape = haproxy.SHAPES[0] if product == "haproxy" else nginx.ACCESS_SHAPES[0]
    make = haproxy_line if product == "haproxy" else _nginx_variant
    rng = random.Random(11)
    alphabet = b' \t[]:/.-+"=,0123456789aAZ_?'
    seen = {True: 0, False: 0}
    for i in range(20000):
        line = bytearray(make(rng, i, False).encode())
        for _ in range(rng.randint(0, 3)):
            at = rng.randrange(len(line) + 1)
            what = rng.random()
            if what < 0.4:
                line[at:at] = bytes([rng.choice(alphabet)])
            elif what < 0.7:
                del line[at : at + rng.randint(1, 3)]
            else:
                line[at : at + 1] = bytes([rng.choice(alphabet)])
        data = bytes(line) + b"\n"
        found = shape.pattern.findall(data)
        got = accelerator(data)
        seen[got is not None] += 1
        if len(found) != 1:
            assert got is None, data
        elif got is not None:
            assert got[1] == {shape.key_of(found[0]): 1}, data
            assert got[2] == got[3] == found[0][0], data
    assert min(seen.values()) > 2000, seen


def test_byte_ranges_read_from_a_probe_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` reads logs in a probe thread beside others: the workers then come from the forkserver (no
    fork of a process running threads), with the same result."""
    monkeypatch.setattr(parts, "SPLIT_AT", 64 << 10)
    path = logs(tmp_path, 7)[0]
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append((start_method(), read(path, jobs=2))))
    thread.start()
    thread.join(120)
    assert got and got[0][0] != "fork"
    assert got[0][1] == read(path, jobs=1)


def test_a_request_time_of_infinity_is_no_duration(tmp_path: Path) -> None:
    """rt=inf on a long poll was an OverflowError (a traceback); it is a record without a duration."""
    log = tmp_path / "access.log"
    log.write_text(
        '203.0.113.9 - - [04/Mar/2024:00:00:01 +0000] "POST /Microsoft-Server-ActiveSync/default.eas?'
        'Cmd=Ping HTTP/1.1" 200 12 "-" "Outlook" rt=inf ua="10.0.0.1:443" us="200"\n'
        '203.0.113.9 - - [04/Mar/2024:00:00:02 +0000] "POST /Microsoft-Server-ActiveSync/default.eas?'
        'Cmd=Ping HTTP/1.1" 200 12 "-" "Outlook" rt=1740.5 ua="10.0.0.1:443" us="200"\n'
    )
    facts = {f[1]: f[2] for f in read(log)[0]}
    assert facts["nginx:all"]["records"] == 2 and facts["nginx:all"]["eas_ping"] == 2
    assert facts["nginx:all"]["long_poll_durations"] == ("eas_ping 1740s 1",)  # the one with a duration


def _shuffled_times(rng: random.Random, product: str, count: int) -> bytes:
    """Clean records whose times go back and forth within a day (nginx also in a second zone), then a
    record out of format near the end: its line number is counted past many accelerated blocks."""
    out = []
    for i in range(count):
        hh, mm, ss = rng.randrange(24), rng.randrange(60), rng.randrange(60)
        if product == "nginx":
            zone = "+0000" if i < count // 2 or rng.random() < 0.5 else "-0500"
            out.append(
                f"203.0.113.{i % 9} - - [0{4 + i // 400 % 2}/Mar/2024:{hh:02d}:{mm:02d}:{ss:02d} {zone}] "
                f'"GET /owa/ HTTP/1.1" {rng.choice(("200", "499", "502"))} 12 "-" "Outlook" rt=0.{i % 9}'
            )
        else:
            out.append(
                f"203.0.113.{i % 9}:4{i % 999} [0{4 + i // 400 % 2}/Mar/2024:{hh:02d}:{mm:02d}:{ss:02d}.{i % 1000}] "
                f"fe~ be_ex/cas{i % 3} 0/0/1/2/{i} {rng.choice(('200', '502', '-1'))} 123 - - "
                f'{rng.choice(("----", "SH--", "CD--"))} 1/1/1/1/0 0/0 "GET /owa/ HTTP/1.1"'
            )
    out.insert(count - 3, "not a record at all")
    return ("\n".join(out) + "\n").encode()


@pytest.mark.skipif(w3c._fastproxy is None, reason="the C accelerator is not built here")
@pytest.mark.parametrize("product", ["haproxy", "nginx"])
def test_accelerated_blocks_keep_times_and_line_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, product: str
) -> None:
    """The earliest and latest times, and the line number of a bad line after accelerated blocks, are the
    pure-Python ones when blocks are counted in C (add_closed, or by the block reader itself when their
    times are within those seen), and their lines not counted again."""
    from diagnose.probes.proxylogs import tally

    path = tmp_path / f"{product}.log"
    path.write_bytes(_shuffled_times(random.Random(5), product, 3000))
    monkeypatch.setattr("diagnose.probes.proxylogs.lines.BLOCK", 2048)
    added = []
    real_add = tally._add_closed

    def counting_add(*args: Any) -> bool:
        got = real_add(*args)  # type: ignore[misc]
        added.append(got)
        return bool(got)

    counting = _Counting()
    monkeypatch.setattr(w3c, "_fastproxy", counting)  # for the fast reading (fast_and_pure takes it away after)
    fast, pure = fast_and_pure(monkeypatch, path, tally, "_add_closed", counting_add)
    assert any(added), "no block was counted by add_closed"
    assert counting.added > 0, "no block was counted into the tally by the block reader"
    assert fast == pure
    assert any(f"{path}:2998:" in p for p in fast[2]), fast[2]


@pytest.mark.skipif(w3c._fastproxy is None, reason="the C accelerator is not built here")
def test_keys_kept_between_blocks_and_those_past_the_bounds_count_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The accelerator keeps the key objects it made (at most 8,192, of at most 256 bytes): more distinct
    keys than that (EAS pings of 20,000 durations) and keys longer (a 300-character back end) count as
    the pure-Python path counts them."""
    rows = []
    for i in range(24_000):
        backend = "be_" + ("x" * 300 if i % 7 == 0 else f"cas{i % 3}")
        rows.append(
            f"203.0.113.{i % 9}:4{i % 999} [04/Mar/2024:00:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}] "
            f"fe~ {backend}/s1 0/0/1/2/{(i % 20_000) * 1000 + 17} {('200', '502', '-1')[i % 3]} 12 - - "
            f'{("----", "SH--", "CD--")[i % 3]} 1/1/1/1/0 0/0 "POST /Microsoft-Server-ActiveSync/'
            f'default.eas?Cmd=Ping&User=u{i % 5} HTTP/1.1"\n'
        )
    path = tmp_path / "haproxy.log"
    path.write_text("".join(rows))
    counting = _Counting()
    fast, pure = fast_and_pure(monkeypatch, path, w3c, "_fastproxy", counting)
    assert counting.accepted > 0
    assert fast == pure
