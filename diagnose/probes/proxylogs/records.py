"""Logs of one record per line in a fixed shape (HAProxy, nginx): read with one regular expression.

A block of whole lines is matched in one `findall` (a C loop over the block); when every line is a
record the block is counted as is. A block with anything else (a blank line, a message that is not
a traffic record, a control byte, a damaged line) is read again line by line, so each line that is
not a record is named by its number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from re import Pattern
from typing import Tuple

from diagnose.probes.proxylogs import w3c
from diagnose.probes.proxylogs.lines import CONTROL as _CONTROL
from diagnose.probes.proxylogs.lines import Block
from diagnose.probes.proxylogs.tally import Classify, Key, Summary, Tally, messages_note

Groups = Tuple[bytes, ...]


@dataclass(frozen=True)
class Shape:
    """One product's line format: `pattern` matches a whole record line (MULTILINE, `^...$`) and its
    groups become a key by `key_of`; `when` is the group index of the record's time, `time_of` its
    conversion to ISO UTC; `message` matches the product's lines that are not traffic records."""

    product: str
    format: str
    pattern: Pattern[bytes]
    key_of: Callable[[Groups], Key]
    classify: Classify
    when: int
    time_of: Callable[[str], str]
    message: Pattern[bytes] | None = None
    keys_of: Callable[[list[Groups]], list[Key]] | None = None  # all keys of a batch at once, as key_of gives


class Reader:
    def __init__(self, shapes: Sequence[Shape], summary: Summary, source: str) -> None:
        self.shapes = shapes
        self.summary = summary
        self.source = source
        self.tallies = {s.format: Tally(summary, s.product, source, s.classify) for s in shapes}
        self.shape = shapes[0]
        self.first = ""
        self.last = ""
        self._within = (b"", b"")  # times as logged of an accelerated block whose extremes were seen
        self.messages = 0

    @property
    def state(self) -> str:
        """The format of the last record read (the next line is tried in it first)."""
        return self.shape.format

    def resume(self, state: str) -> None:
        """Read on from a byte range whose last record was in format `state`."""
        self.shape = next(s for s in self.shapes if s.format == state)

    def read(self, blocks: Iterable[Block], part: bool = False) -> None:
        """Read every block; `part`: the blocks are one byte range of a file (the count of lines that
        are the product's messages is kept for the whole file's note). What was read is counted even when
        the blocks end in an error (a cut .gz, the deadline)."""
        try:
            for block in blocks:
                if not self._fast(block):
                    self._slow(block)
        finally:
            self._close(part)

    def _close(self, part: bool) -> None:
        for tally in self.tallies.values():
            tally.flush()
        if self.first:
            self.summary.see_times(self.shape.product, self.first, self.last)
        if part:
            self.summary.messages[(self.source, self.shape.product)] += self.messages
        elif self.messages:
            self.summary.note(self.source, 0, messages_note(self.messages, self.shape.product))

    def _fast(self, block: Block) -> bool:
        data = block.data
        if not data.endswith(b"\n"):
            return False
        if self.shape.format in _ACCELERATED and w3c._fastproxy is not None and self._accelerated(block):
            return True
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        if len(data.translate(None, _CONTROL)) != len(data):
            return False
        found = self.shape.pattern.findall(data)
        if len(found) != data.count(b"\n"):
            return False
        self._count(self.shape, found, block.first_line.__add__, lambda i: data.split(b"\n", i + 1)[i])
        return True

    def _accelerated(self, block: Block) -> bool:
        """A block of HAProxy HTTP or nginx access records counted by the C accelerator, as `_fast` counts
        it; False when the accelerator refuses it, a record of it would be cited or its times need a
        closer look."""
        tally = self.tallies[self.shape.format]
        low, high = self._within
        found = getattr(w3c._fastproxy, _ACCELERATED[self.shape.format])(block.data, *tally.targets(), low, high)
        if found is None:
            return False
        _, counts, lo, hi = found
        if counts is None:  # counted into the tally in C: every key quiet, the times within those seen
            tally.counted()
            if block.lines is not None:
                block.lines.append(found[0])
            return True
        zoned = lo[-6:-5] == b" "  # nginx's "+0000" (one per block): a block of another zone is converted
        near = bool(low) and low[:12] == lo[:12] == hi[:12] and (low[-5:] == lo[-5:] or not zoned)
        if near and low <= lo and hi <= high:
            first, last = self.first, self.last  # within times seen, of one day (and zone): nothing new
        else:
            first, last = _plain_extremes(self.shape, lo, hi)
        if not (first and tally.absorb(counts)):
            return False
        if block.lines is not None:
            block.lines.append(found[0])  # one record per line: line_blocks need not count them
        self.first = min(self.first, first) if self.first else first
        self.last = max(self.last, last)
        self._within = (min(low, lo), max(high, hi)) if near else (lo, hi)  # times seen, of one day and zone
        return True

    def _slow(self, block: Block) -> None:
        raws = block.data.split(b"\n")
        clean = block.data.endswith(b"\n")
        if clean:
            raws.pop()
        pending: list[Groups] = []
        numbers: list[int] = []
        texts: list[bytes] = []

        def flush() -> None:
            if pending:
                self._count(self.shape, list(pending), numbers.__getitem__, texts.__getitem__)
            pending.clear()
            numbers.clear()
            texts.clear()

        for offset, raw in enumerate(raws):
            number = block.first_line + offset
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line.strip():
                continue
            unterminated = block.last and not clean and offset == len(raws) - 1
            if len(line.translate(None, _CONTROL)) != len(line):
                self.summary.bad_line(
                    self.source,
                    number,
                    "truncated last line (binary data) skipped" if unterminated else "binary garbage skipped",
                    unterminated,
                )
                continue
            shape, groups = self._match(line + b"\n")
            if shape is None:
                if any(s.message is not None and s.message.search(line) for s in self.shapes):
                    self.messages += 1
                    continue
                self.summary.bad_line(
                    self.source,
                    number,
                    "truncated last line" if unterminated else f"not a {self.shape.product} record in a known format",
                    unterminated,
                )
                continue
            if shape is not self.shape:
                flush()
                self.shape = shape
            pending.append(groups)
            numbers.append(number)
            texts.append(line)
        flush()

    def _match(self, line: bytes) -> tuple[Shape | None, Groups]:
        for shape in (self.shape, *self.shapes):
            m = shape.pattern.match(line)
            if m:
                return shape, m.groups()
        return None, ()

    def _count(
        self, shape: Shape, found: list[Groups], line_of: Callable[[int], int], text_of: Callable[[int], bytes]
    ) -> None:
        keys = shape.keys_of(found) if shape.keys_of is not None else list(map(shape.key_of, found))
        self.tallies[shape.format].consume(keys, line_of, text_of)
        first, last = _extremes(shape, [groups[shape.when] for groups in found])
        if first:
            self.first = min(self.first, first) if self.first else first
            self.last = max(self.last, last)


_ACCELERATED = {"haproxy-http": "haproxy_block", "nginx-access": "nginx_block"}  # format -> accelerator


def _plain_extremes(shape: Shape, lo: bytes, hi: bytes) -> tuple[str, str]:
    """The least and greatest times as text, as ISO UTC, when they are of one day and readable (then
    they are the earliest and latest, times of one zone given); else ("", "")."""
    if lo[:12] == hi[:12]:
        first = shape.time_of(lo.decode("ascii", "replace"))
        last = shape.time_of(hi.decode("ascii", "replace"))
        if first and last:
            return first, last
    return "", ""


def _extremes(shape: Shape, times: list[bytes]) -> tuple[str, str]:
    """The earliest and latest of the records' times (ISO UTC; "" when none can be read). Times of one
    day and zone order as text (the usual block); others are converted one distinct value at a time."""
    lo, hi = min(times), max(times)
    if lo[-5:-4] not in (b"+", b"-") or len({t[-5:] for t in times}) == 1:
        first, last = _plain_extremes(shape, lo, hi)
        if first:
            return first, last
    stamps = {shape.time_of(t.decode("ascii", "replace")) for t in set(times)} - {""}
    return (min(stamps), max(stamps)) if stamps else ("", "")


def compiled(pattern: bytes) -> Pattern[bytes]:
    return re.compile(pattern, re.MULTILINE | re.VERBOSE)
