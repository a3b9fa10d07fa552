"""Reading one W3C log (or one byte range of one) into a `LogSummary`: its bytes into blocks of
whole lines (in any encoding TMG writes, with over-long lines skipped), the blocks into records, which
the `Scanner` (scanner.py) counts. The other jobs of reading a log have modules of their own:
`legs` (which leg a record is on), `times` (logged times), `fields` (a field's text, damaged lines),
`records` (the formats that are not W3C, converted to canonical fields). The block size (`BLOCK`)
and the accelerator (`_fastscan`) are chosen here.

A W3C log is read in blocks of whole lines (128 KiB, read into one reused buffer). A clean block,
all records of the current layout, takes one of two fast ways, which give the same figures:

* the C accelerator (`_fastscan.scan_block`, built at install time; see `hatch_build.py`) checks,
  splits and counts the block in one pass: the key columns (destination, networks, action, status,
  rule) counted by distinct combination, the earliest and latest time, Outlook Anywhere records,
  and the records whose status needs a closer look, handed back with just the columns read below;
* in pure Python (no compiler at install, or DIAGNOSE_PURE_PYTHON=1), every line end is made a
  field of its own, so one `bytes.split` gives a flat list in which record i is
  fields[i*stride : i*stride+width] and each column is a slice; the key columns are counted with
  one `Counter` over `zip` of their slices.

Each distinct key combination is classified once in Python. Only the records that need more
(Status 64, client-visible failures, the first few of each notable code) are looked at one by one.
Blocks that are not clean (a header line, a line with the wrong number of fields, a control byte)
take the careful line-by-line path, which feeds the same counting code.
"""

from __future__ import annotations

import codecs
import os
import re
import typing
from collections.abc import Iterable, Iterator
from typing import IO

from diagnose.bounds import MAX_LINE_BYTES
from diagnose.probes.logs.fields import _CONTROL, _GARBAGE, _text
from diagnose.probes.logs.layout import FIXED_FIREWALL, FIXED_WEB, Layout

# `X as X`: names that moved to their own modules, still importable from here (the tests read them here)
from diagnose.probes.logs.legs import Site as Site
from diagnose.probes.logs.records import CanonBuilder as CanonBuilder
from diagnose.probes.logs.records import _utc_stamp as _utc_stamp
from diagnose.probes.logs.records import _utc_stamp_of as _utc_stamp_of
from diagnose.probes.logs.scanner import Scanner
from diagnose.probes.logs.scanner import _int as _int
from diagnose.probes.logs.summary import LogSummary
from diagnose.probes.logs.times import parse_datetime as parse_datetime
from diagnose.probes.logs.times import to_utc as to_utc

try:  # the optional C accelerator (built by hatch_build.py); the pure-Python path is the reference
    import diagnose.probes.logs._fastscan as _fastscan
except ImportError:  # pragma: no cover - depends on the build
    _fastscan = None
if os.environ.get("DIAGNOSE_PURE_PYTHON"):  # for comparing the two paths (tests, bench/logs.py)
    _fastscan = None

BLOCK = 1 << 17  # small enough that a block's fields stay in the CPU cache while it is counted


class NotALog(Exception):
    """The input is not a TMG / ISA log in any known format."""


# ------------------------------------------------------------------ byte streams and encodings


def utf16_encoding(head: bytes) -> str | None:
    """The UTF-16 flavour of a file from its first bytes, or None for UTF-8 / single-byte ANSI."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if len(head) >= 4 and head[1:2] == b"\x00" and head[3:4] == b"\x00" and head[0:1] != b"\x00":
        return "utf-16-le"
    if len(head) >= 4 and head[0:1] == b"\x00" and head[2:3] == b"\x00" and head[1:2] != b"\x00":
        return "utf-16-be"
    return None


def decoded_blocks(stream: IO[bytes], first: bytes = b"") -> Iterator[bytes]:
    """UTF-8 (or single-byte ANSI) blocks from a stream in any of the encodings TMG files come in."""
    head = first + stream.read(max(0, 4096 - len(first)))
    if head.startswith(codecs.BOM_UTF8):
        head = head[3:]
    encoding = utf16_encoding(head)
    if encoding is None:
        yield head
        while block := stream.read(BLOCK):
            yield block
        return
    decoder = codecs.getincrementaldecoder(encoding)("replace")
    yield decoder.decode(head).encode("utf-8")
    while block := stream.read(BLOCK):
        yield decoder.decode(block).encode("utf-8")
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail.encode("utf-8")


LongLine = typing.Callable[[int], None]  # told the number (1-based, in the lines handed out) of a line skipped


def long_line_note(summary: LogSummary, source: str, first_line: int = 1) -> LongLine:
    """What a line splitter calls for a line over the bound: a bad line cited as `file:line`."""

    def note(number: int) -> None:
        summary.bad_line(
            source,
            first_line - 1 + number,
            f"line longer than {MAX_LINE_BYTES:,} bytes skipped (bound: diagnose.bounds.MAX_LINE_BYTES)",
        )

    return note


def line_blocks(
    blocks: Iterable[bytes], long_line: LongLine | None = None, limit: int = MAX_LINE_BYTES
) -> Iterator[tuple[bytes, bool]]:
    """Blocks of whole lines; the last block (flag True) may end without a newline.

    A line longer than `limit` bytes is never held whole: it is handed out as an empty line (so line
    numbers stay right) and `long_line` is told its number. Blocks must not be longer than `limit`."""
    carry = b""
    seen = 0  # line ends handed out so far
    skipping = False  # inside a line already over the bound: drop up to its end
    for block in blocks:
        if skipping:
            nl = block.find(b"\n")
            if nl < 0:
                continue
            skipping = False
            seen += 1
            yield b"\n", False
            block = block[nl + 1 :]
        data = carry + block if carry else block
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) > limit:
                skipping, carry = True, b""
                if long_line is not None:
                    long_line(seen + 1)
                continue
            carry = data
            continue
        if carry:
            first = data.find(b"\n")
            if first > limit:  # the line carried over ends here, too long
                if long_line is not None:
                    long_line(seen + 1)
                data = data[first:]
                cut -= first
        carry = data[cut + 1 :]
        out = data[: cut + 1]
        seen += out.count(b"\n")
        yield out, False
    if skipping:
        yield b"", True
        return
    yield carry, True


def stream_line_blocks(
    stream: IO[bytes],
    first: bytes = b"",
    limit: int | None = None,
    long_line: LongLine | None = None,
    line_limit: int = MAX_LINE_BYTES,
) -> Iterator[tuple[bytes, bool]]:
    """`line_blocks` straight from a byte stream (at most `limit` bytes after `first`): read into
    one reused buffer, so each block of whole lines is copied once, and no block is allocated and
    faulted in afresh for every read. A line longer than `line_limit` is handed out as an empty line
    and `long_line` told its number (see `line_blocks`); the buffer never grows much past the bound."""
    size = BLOCK
    buf = bytearray(size)
    have = 0
    early = first  # read before (format detection); handed out first, in blocks like the rest
    left = limit
    seen = 0  # line ends handed out so far
    skipping = False  # inside a line already over the bound: drop up to its end
    while True:
        got = 0
        if early:
            got = min(size - have, len(early))
            buf[have : have + got] = early[:got]
            early = early[got:]
        else:
            want = size - have if left is None else min(size - have, left)
            if want > 0:
                with memoryview(buf) as view:
                    got = stream.readinto(view[have : have + want]) or 0  # type: ignore[attr-defined]
            if left is not None:
                left -= got
        if got == 0:
            yield (b"" if skipping else bytes(buf[:have])), True
            return
        have += got
        if skipping:
            nl = buf.find(b"\n", 0, have)
            if nl < 0:
                have = 0
                continue
            skipping = False
            buf[: have - nl] = buf[nl:have]  # the skipped line becomes an empty one
            have -= nl
        cut = buf.rfind(b"\n", 0, have)
        if cut < 0:
            if have == size:
                if size > line_limit:  # a line over the bound: skip to its end
                    skipping, have = True, 0
                    if long_line is not None:
                        long_line(seen + 1)
                    continue
                buf.extend(bytes(size))  # a line longer than the buffer: make room
                size *= 2
            continue
        if size > BLOCK:  # the buffer grew for a long line: is it over the bound?
            nl = buf.find(b"\n", 0, have)
            if nl > line_limit:
                if long_line is not None:
                    long_line(seen + 1)
                buf[: have - nl] = buf[nl:have]
                have -= nl
                cut -= nl
        with memoryview(buf) as view:
            block = bytes(view[: cut + 1])
        tail = have - cut - 1
        buf[:tail] = buf[cut + 1 : have]
        have = tail
        if size > BLOCK and have < BLOCK // 2:  # back to the usual buffer once the long line is gone
            del buf[BLOCK:]
            size = BLOCK
        seen += block.count(b"\n")
        yield block, False


def bounded_blocks(blocks: Iterable[bytes], long_line: LongLine | None = None) -> Iterator[bytes]:
    """Raw blocks with every line over the bound made empty (for readers that split lines themselves)."""
    for block, _last in line_blocks(blocks, long_line):
        if block:
            yield block


# ------------------------------------------------------------------ W3C (and syslog-relayed W3C)

_SYSLOG_TAG = re.compile(rb"ISA(Web|FWS)Log\s+(?:\d+\s+)?")


def scan_w3c(
    scanner: Scanner, blocks: Iterable[tuple[bytes, bool]], first_line: int = 1, layout: Layout | None = None
) -> int:
    """Scan W3C extended lines; returns the number of physical lines read."""
    if layout is not None:
        scanner.set_layout(layout)
    line = first_line
    for block, last in blocks:
        if not block:
            continue
        n_lines = _fast_block(scanner, block, line)
        if n_lines < 0:
            n_lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            _slow_block(scanner, block, line, last)
        line += n_lines
    return line - first_line


def _fast_block(scanner: Scanner, block: bytes, first_line: int) -> int:
    """A block of whole lines, all records of the current layout, split in one go into columns;
    returns the number of lines, or -1 when the block needs the careful path."""
    layout = scanner.layout
    if layout is None or not block.endswith(b"\n"):
        return -1
    if _fastscan is not None:
        return scanner.consume_block(block, first_line, _fastscan)
    if len(block.translate(None, _CONTROL)) != len(block):  # a control byte: the careful path says where
        return -1
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
        if b"\r" in block:
            return -1
    width = layout.width
    stride = width + 1
    # Every line end becomes a field of its own (b"\n", the only field that can hold one), so the
    # whole block splits into one list: record i is fields[i*stride : i*stride+width]. The split is
    # exact when there are n*stride fields (plus the empty one after the last TAB) and every
    # stride-th field is a line end: then each of the n lines holds exactly `width` fields.
    spread = block.replace(b"\n", b"\t\n\t")
    n = (len(spread) - len(block)) >> 1  # the line ends, counted by the replacement
    fields = spread.split(b"\t")
    del spread
    if len(fields) != n * stride + 1 or fields[width::stride].count(b"\n") != n:
        return -1
    fields.pop()
    if b"\n#" in b"\n" + b"\n".join(fields[0::stride]):  # a header or comment line: the careful path
        return -1
    scanner.consume(fields, stride, first_line.__add__)
    return n


def _slow_block(scanner: Scanner, block: bytes, first_line: int, last: bool) -> None:
    summary = scanner.summary
    pending: list[list[bytes]] = []
    numbers: list[int] = []

    def flush() -> None:
        if pending:
            scanner.consume_rows(pending, numbers.__getitem__)
            pending.clear()
            numbers.clear()

    raw_lines = block.split(b"\n")
    ends_clean = block.endswith(b"\n")
    if ends_clean:
        raw_lines.pop()
    for offset, raw in enumerate(raw_lines):
        number = first_line + offset
        text = raw[:-1] if raw.endswith(b"\r") else raw
        if not text.strip():
            continue
        final_unterminated = last and not ends_clean and offset == len(raw_lines) - 1
        relayed = _SYSLOG_TAG.search(text) if b"ISA" in text else None
        if relayed:
            text = text[relayed.end() :]
        if text.startswith(b"#"):
            if text[:8].lower() == b"#fields:":
                flush()
                names = [n.strip() for n in _text(text[8:]).split("\t")]
                if len(names) == 1:
                    names = _text(text[8:]).split()
                new = Layout.from_names(names)
                if not new.looks_like_log():
                    summary.note(scanner.source, number, "#Fields header without action/status fields")
                scanner.set_layout(new)
            continue
        if _GARBAGE.search(text):
            if final_unterminated:
                summary.bad_line(scanner.source, number, "truncated last line (binary data) skipped", True)
            else:
                summary.bad_line(scanner.source, number, "binary garbage skipped")
            continue
        parts = text.split(b"\t")
        layout = scanner.layout
        if relayed and (layout is None or len(parts) != layout.width):
            fixed = (FIXED_WEB if relayed.group(1) == b"Web" else FIXED_FIREWALL).get(len(parts))
            if fixed is not None:
                flush()
                scanner.set_layout(fixed)
                layout = fixed
        if layout is None:
            summary.bad_line(scanner.source, number, "record before any #Fields header")
            continue
        if len(parts) != layout.width:
            if final_unterminated and len(parts) < layout.width:
                summary.bad_line(
                    scanner.source,
                    number,
                    f"truncated last line ({len(parts)} of {layout.width} fields)",
                    True,
                )
            else:
                summary.bad_line(
                    scanner.source, number, f"{len(parts)} fields where the #Fields header has {layout.width}"
                )
            continue
        pending.append(parts)
        numbers.append(number)
    flush()
