"""The packets of a few chosen connections, kept for the reports' ladder diagrams.

The analysis keeps no packets (its memory is bounded by the connections open at once). Once it has
decided which connections it cites (Status 64 matches, teardown samples, the first connections that
lost packets), the capture files are read a second time with a `PacketRecorder`: a `Tracker` that
tracks nothing (its connection table stays empty, so the readers, the inline Python paths and the C
accelerator alike, hand it every TCP segment through `packet` or `open_syn`) and keeps the segments
of the chosen connections only, identified by their file and first frame. Each file is read only up
to the last frame cited in it.

Per connection at most HEAD first packets, the BEFORE_LOSS packets before and AFTER_LOSS packets from
its first retransmission or gap, and the TAIL last packets are kept; the rest are counted. A SYN that
opens a connection reaches the recorder without its window in the accelerated paths, so the window
of a SYN is never reported (the facts are the same on every path).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from diagnose.probes.capture.formats import read_capture
from diagnose.probes.capture.tcp import ACK, FIN, PSH, RST, SYN, Tracker, _reverse_text_key, endpoints_of, reverse_key

HEAD = 4
TAIL = 16
BEFORE_LOSS = 3
AFTER_LOSS = 5
MAX_LADDERS = 8  # connections recorded per run
FLAG_NAMES = ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK"), (0x20, "URG"))


@dataclass(frozen=True)
class Wanted:
    """A connection whose packets are to be kept: its file (name, as the facts cite it) and frames."""

    source: str
    first_frame: int
    last_frame: int
    loss_frame: int | None = None


@dataclass(frozen=True)
class Packet:
    frame: int
    time: float  # seconds after the connection's first kept packet
    sender: str  # ip:port as the capture shows it ("?:port" in a NetMon text export without addresses)
    flags: int
    window: int | None  # None for a SYN (see the module docstring)
    length: int
    seq: int
    ack: int
    bad_checksum: bool

    def flag_text(self) -> str:
        return ",".join(name for bit, name in FLAG_NAMES if self.flags & bit) or "none"


@dataclass
class Recording:
    """The packets kept of one connection; `omitted` counts those left out, `gaps` where (after which
    kept frame) packets were left out."""

    wanted: Wanted
    packets: list[Packet] = field(default_factory=list)
    seen: int = 0
    omitted: int = 0
    after: list[int] = field(default_factory=list)  # kept frames after which packets were left out
    start: float = 0.0


class _Track:
    """The packets kept of one connection while it is read; a row is (frame, ts, sender, flags, win,
    plen, seq, ack, bad, position in the connection)."""

    __slots__ = ("before", "head", "loss", "loss_left", "seen", "start", "tail", "wanted")

    def __init__(self, wanted: Wanted, start: float) -> None:
        self.wanted = wanted
        self.start = start
        self.head: list[tuple] = []
        self.before: deque[tuple] = deque(maxlen=BEFORE_LOSS)
        self.loss: list[tuple] | None = None  # from the first retransmission or gap on
        self.loss_left = AFTER_LOSS
        self.tail: deque[tuple] = deque(maxlen=TAIL)
        self.seen = 0

    def add(self, row: tuple) -> None:
        self.seen += 1
        if len(self.head) < HEAD:
            self.head.append(row)
            return
        lf = self.wanted.loss_frame
        if lf is not None:
            if self.loss is None and row[0] >= lf:
                self.loss = list(self.before)
            if self.loss is None:
                self.before.append(row)
            elif self.loss_left:
                self.loss.append(row)
                self.loss_left -= 1
        self.tail.append(row)

    def recording(self) -> Recording:
        rows = {r[9]: r for part in (self.head, self.loss or (), self.tail) for r in part}
        kept = [rows[pos] for pos in sorted(rows)]
        rec = Recording(self.wanted, seen=self.seen, omitted=self.seen - len(kept), start=self.start)
        for i, r in enumerate(kept):
            frame, ts, sender, flags, win, plen, seq, ack, bad, pos = r
            rec.packets.append(Packet(frame, round(ts - self.start, 6), sender, flags, win, plen, seq, ack, bad))
            if i + 1 < len(kept) and kept[i + 1][9] > pos + 1:
                rec.after.append(frame)
        return rec


class _Enough(Exception):
    """Raised inside a read once every cited frame of the file has been seen."""


class PacketRecorder(Tracker):
    """A `Tracker` that keeps the packets of the wanted connections and tracks nothing."""

    def __init__(self, wanted: Iterable[Wanted]) -> None:
        super().__init__(lambda c: None)
        self.by_source: dict[str, dict[int, Wanted]] = {}
        for w in wanted:
            self.by_source.setdefault(w.source, {})[w.first_frame] = w
        self.starts: dict[int, Wanted] = {}
        self.stop_at = 0
        self.active: dict[bytes | str, _Track] = {}
        self.done: dict[tuple[str, int], Recording] = {}

    def start_source(self, name: str) -> None:
        super().start_source(name)
        self._close_all()
        self.starts = self.by_source.get(name, {})
        self.stop_at = max((w.last_frame for w in self.starts.values()), default=0)

    def packet(
        self,
        frame: int,
        ts: float,
        key: bytes | str,
        rkey: bytes | str | None,
        flags: int,
        win: int,
        plen: int,
        seq: int,
        ack: int,
        bad: bool,
    ) -> None:
        if frame > self.stop_at:
            raise _Enough
        track = self.active.get(key)
        if track is None or frame > track.wanted.last_frame:
            wanted = self.starts.get(frame)
            if wanted is None:
                return
            track = _Track(wanted, ts)
            if rkey is None:
                rkey = reverse_key(key) if isinstance(key, bytes) else _reverse_text_key(key)
            self.active[key] = self.active[rkey] = track
        sender = endpoints_of(key)[0]
        track.add((frame, ts, sender, flags, None if flags & 0x17 == SYN else win, plen, seq, ack, bad, track.seen))
        if frame == track.wanted.last_frame:
            self._close(track)

    def open_syn(self, frame: int, ts: float, key: bytes | str, rkey: bytes | str | None, seq: int, plen: int) -> None:
        self.packet(frame, ts, key, rkey, SYN, 0, plen, seq, 0, False)

    def sweep(self, now: float, after: int = 0) -> None:
        if after >= self.stop_at:
            raise _Enough

    def _close(self, track: _Track) -> None:
        w = track.wanted
        self.done[(w.source, w.first_frame)] = track.recording()
        for k in [k for k, t in self.active.items() if t is track]:
            del self.active[k]

    def _close_all(self) -> None:
        for track in list(dict.fromkeys(self.active.values())):
            self._close(track)

    def finish(self) -> None:
        self._close_all()


def record(paths: Sequence[Path], wanted: Sequence[Wanted]) -> dict[tuple[str, int], Recording]:
    """The packets of the `wanted` connections, by (file name, first frame), read from `paths`."""
    wanted = list(wanted)
    recorder = PacketRecorder(wanted)
    names = {w.source for w in wanted}
    for path in paths:
        if path.name not in names:
            continue
        with contextlib.suppress(_Enough):
            read_capture(path, recorder)
        recorder.finish()
    return recorder.done
