"""Blocks of whole lines from a log, read with bounded memory.

A block holds whole lines (about `BLOCK` bytes); a line longer than `MAX_LINE` is not kept: it is
reported once as a bad line (by its number) and skipped, so a hostile file without line ends cannot
make the reader hold more than a block and one line.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from typing import IO, NamedTuple, Protocol

BLOCK = 1 << 17
CONTROL = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])  # bytes no text line holds
MAX_LINE = 1 << 16


class Block(NamedTuple):
    data: bytes  # whole lines, each ending in b"\n" except perhaps the file's last
    first_line: int  # the number of the block's first line
    last: bool  # the file's last block (its last line may lack its line end)
    lines: list[int] | None = None  # a reader that counted the block's lines may put their number here


class Readable(Protocol):
    """What line_blocks reads from: a binary file, or a byte range of one (parts._Range)."""

    def read(self, size: int, /) -> bytes: ...


def line_blocks(
    stream: Readable, first: bytes, too_long: Callable[[int], None], ends: list[int] | None = None
) -> Iterator[Block]:
    """Blocks of whole lines of `first` + the rest of `stream`; `too_long(line)` is told of each line
    longer than MAX_LINE, which is skipped (and still counted, so later line numbers stay right).
    `ends`, when given, gets the number of line ends read once the blocks are all read."""
    carry = first
    line = 1
    skipping = False  # inside a line that was too long, up to its line end
    while True:
        chunk = stream.read(BLOCK)
        data = carry + chunk if carry else chunk
        carry = b""
        if skipping:
            end = data.find(b"\n")
            if end < 0:
                if not chunk:
                    if ends is not None:
                        ends.append(line - 1)
                    return
                continue
            data = data[end + 1 :]
            line += 1
            skipping = False
        if not chunk:
            if data:
                yield Block(data, line, True)
            if ends is not None:
                ends.append(line - 1 + data.count(b"\n"))
            return
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) > MAX_LINE:
                too_long(line)
                skipping = True
            else:
                carry = data
            continue
        whole, carry = data[: cut + 1], data[cut + 1 :]
        if len(carry) > MAX_LINE:
            too_long(line + whole.count(b"\n"))
            carry, skipping = b"", True
        told: list[int] = []
        yield Block(whole, line, False, told)
        line += told[0] if told else whole.count(b"\n")


class Utf16:
    """A UTF-16 log (IIS can write its logs in UTF-16, with a byte order mark) read as UTF-8 bytes."""

    def __init__(self, stream: IO[bytes], encoding: str) -> None:
        self.stream = stream
        self.decoder = codecs.getincrementaldecoder(encoding)("replace")
        self.cut = False  # the log ended in the middle of a character

    def read(self, n: int = -1) -> bytes:
        raw = self.stream.read(n)  # an odd byte waits in the decoder for its pair
        if not raw and self.decoder.getstate()[0]:
            self.cut = True
        return self.decoder.decode(raw, final=not raw).encode("utf-8")


def text_stream(stream: IO[bytes], head: bytes) -> tuple[Readable, bytes]:
    """(`stream`, `head`) as UTF-8: a UTF-8 byte order mark is dropped; a UTF-16 one (LE or BE) makes the
    rest of the log read through `Utf16`. `head` is what was read of `stream` already."""
    if head.startswith(codecs.BOM_UTF8):
        return stream, head[3:]
    for bom, encoding in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            wrapped = Utf16(stream, encoding)
            return wrapped, wrapped.decoder.decode(head[2:]).encode("utf-8")
    return stream, head
