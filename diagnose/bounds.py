"""Bounds on what the evidence readers take in: memory, disk and time stay bounded whatever a file holds.

Every reader of a file given as evidence opens it here: `open_input` for files read as a stream
(TMG logs, plain, gzip'd or zip members; gzip'd captures), `read_small` for files read whole (recorded
DNS answers, hosts files, services exports, evidence bundles and recorded facts). Both refuse what is
not a regular file (a FIFO, a device such as /dev/zero, also through a symlink) with one
`InputError` line, without blocking on it.

The bounds are module constants, importable by tests and fuzzers; the functions that apply them take
them as keyword arguments too, so a test can use small ones:

* `MAX_LINE_BYTES`: a text line longer than this is a bad line (counted, cited as `file:line`) and
  skipped without being held in memory (`line_blocks`, `stream_line_blocks` in the log scanner).
* `MAX_INFLATE_RATIO`, `INFLATE_SLACK`, `MAX_INFLATED_BYTES`: a compressed file or zip member may
  decompress to at most `max(INFLATE_SLACK, MAX_INFLATE_RATIO * compressed size)` bytes and never
  more than `MAX_INFLATED_BYTES`; past that reading stops with `BoundExceeded` (the readers keep what
  they read and mark the result partial). Decompression is streamed: memory does not grow with it.
* `MAX_SMALL_INPUT`: files read whole (`read_small`) larger than this are refused.
* `MAX_BUNDLE_BYTES`, `MAX_BUNDLE_FACTS`: an evidence bundle (or recorded facts file) larger than
  this, or holding more facts, is refused with one line (see `diagnose.facts`).
* `MAX_ZIP_MEMBERS`: members of one zip archive read as logs; more are refused.
* `MAX_TEXT_CAPTURE_BYTES`: a NetMon text export is read whole; past this it is read in part.

A stream opened with a `deadline` (a `time.monotonic()` value, as in `ProbeContext.deadline`; the
clock is system-wide, so a worker process may be given it) raises `DeadlineExceeded` on the first
read after it: `collect --timeout` stops a reader that way.
"""

from __future__ import annotations

import io
import os
import stat
import threading
import time
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any

from diagnose.errors import InputError

MAX_LINE_BYTES = 4 << 20  # 4 MiB: TMG log lines are a few kB; a longer line is a bad line, skipped
MAX_INFLATE_RATIO = 100  # text logs gzip at 5-30x, captures at 2-10x; zeros at ~1000x
INFLATE_SLACK = 64 << 20  # below 64 MiB decompressed the ratio is not checked (small files)
MAX_INFLATED_BYTES = 32 << 30  # 32 GiB of decompressed data from one file or member, at most
MAX_SMALL_INPUT = 64 << 20  # hosts files, DNS recordings, services exports: read whole, at most 64 MiB
MAX_BUNDLE_BYTES = 128 << 20  # an evidence bundle or recorded facts file, at most 128 MiB
MAX_BUNDLE_FACTS = 250_000  # facts in one bundle or recorded facts file (about 50 MB of JSON)
MAX_ZIP_MEMBERS = 100_000  # members of one zip archive of logs
MAX_TEXT_CAPTURE_BYTES = 256 << 20  # a NetMon text export is read whole: at most its first 256 MiB

GZIP_MAGIC = b"\x1f\x8b"
_KIND = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class BoundExceeded(InputError):
    """An input went past one of the bounds above (a decompression bomb, a file too large)."""


class DeadlineExceeded(InputError):
    """The run's deadline passed while the input was being read."""


# what reading a (compressed) input may raise on damage or a bound; a reader keeps what it read
READ_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile, BoundExceeded, DeadlineExceeded)


def read_error(exc: BaseException) -> str:
    """What went wrong reading an input, in words (without the file name, which the caller gives)."""
    if isinstance(exc, InputError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _refuse(st: os.stat_result, path: str) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(21, "Is a directory", path)
    if not stat.S_ISREG(st.st_mode):
        kind = _KIND.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise InputError(f"refused: {kind}, not a regular file", path)


def open_regular(path: str | Path) -> io.FileIO:
    """A regular file opened for reading; anything else is refused (`InputError`) without blocking.

    Missing files and folders raise `FileNotFoundError` / `IsADirectoryError` (callers word those)."""
    name = str(path)
    _refuse(os.stat(name), name)  # a FIFO is refused before open() could block on it
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(name, flags)
    try:
        _refuse(os.fstat(fd), name)  # what was opened, not what was looked at (a swapped symlink)
        return io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def input_size(path: str | Path) -> int:
    """The size of a regular file (`InputError` for anything else)."""
    name = str(path)
    st = os.stat(name)
    _refuse(st, name)
    return st.st_size


class Guarded(io.RawIOBase):
    """A byte stream read through the bounds: at most `limit` bytes come out (else `BoundExceeded`
    with `why`), and no read starts after `deadline` (else `DeadlineExceeded`)."""

    def __init__(
        self,
        inner: IO[bytes] | io.BufferedIOBase,
        name: str,
        limit: int | None = None,
        why: str = "",
        deadline: float | None = None,
        owned: tuple[Any, ...] = (),
    ) -> None:
        super().__init__()
        self.inner, self.name, self.limit, self.why, self.deadline = inner, name, limit, why, deadline
        self.done = 0
        self._owned = owned

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self.limit is None and self.inner.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.inner.seek(offset, whence)

    def tell(self) -> int:
        return self.inner.tell()

    def readinto(self, target: Any) -> int:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineExceeded(f"stopped at the deadline after {self.done:,} bytes", self.name)
        with memoryview(target) as view:
            if self.limit is not None:
                if self.done >= self.limit:
                    # one byte more tells a stream that ends exactly at the bound from one that goes on
                    if self.inner.read(1):
                        raise BoundExceeded(self.why, self.name)
                    return 0
                view = view[: self.limit - self.done]
            n = self.inner.readinto(view) or 0  # type: ignore[union-attr]  # IO[bytes] (a zip member) has it too
        self.done += n
        return n

    def close(self) -> None:
        if not self.closed:
            try:
                self.inner.close()
                for thing in self._owned:
                    thing.close()
            finally:
                super().close()


def inflate_limit(
    compressed: int, ratio: int = MAX_INFLATE_RATIO, slack: int = INFLATE_SLACK, ceiling: int = MAX_INFLATED_BYTES
) -> int:
    """Decompressed bytes allowed for `compressed` bytes of input."""
    return min(ceiling, max(slack, ratio * compressed))


def _bomb(limit: int, compressed: int) -> str:
    return (
        f"decompresses to more than {limit:,} bytes from {compressed:,} compressed "
        f"(bound: {MAX_INFLATE_RATIO}x, at most {MAX_INFLATED_BYTES:,}); read stopped there"
    )


def open_input(
    path: str | Path, member: str | None = None, deadline: float | None = None, limit: int | None = None
) -> io.BufferedReader:
    """The one opener of streamed evidence: a regular file, gunzipped on the fly when it is gzip'd,
    or a member of a zip archive; decompressed data is bounded (`inflate_limit`, or `limit`).
    Reads raise `BoundExceeded` past the bound and `DeadlineExceeded` after `deadline`."""
    name = str(path)
    if member is not None:
        archive = zip_archive(name)
        info = archive.getinfo(member)
        cap = limit if limit is not None else inflate_limit(info.compress_size)
        with _ZIPS_LOCK:  # the archive is shared between threads; its open-member count is not locked
            inner = archive.open(info)
        stream = Guarded(inner, f"{name}!{member}", cap, _bomb(cap, info.compress_size), deadline)
        return io.BufferedReader(stream, 1 << 16)
    raw = open_regular(name)
    try:
        head = raw.read(2)
        raw.seek(0)
        if head == GZIP_MAGIC:
            import gzip

            size = os.fstat(raw.fileno()).st_size
            cap = limit if limit is not None else inflate_limit(size)
            unpacked = gzip.GzipFile(fileobj=raw, mode="rb")
            return io.BufferedReader(Guarded(unpacked, name, cap, _bomb(cap, size), deadline, (raw,)), 1 << 16)
        return io.BufferedReader(Guarded(raw, name, None, "", deadline), 1 << 16)
    except BaseException:
        raw.close()
        raise


def is_gzip(path: str | Path) -> bool:
    with open_regular(path) as fh:
        return fh.read(2) == GZIP_MAGIC


def read_small(path: str | Path, limit: int = MAX_SMALL_INPUT, what: str = "file") -> bytes:
    """The bytes of a file read whole, refused (`BoundExceeded`) when larger than `limit`."""
    name = str(path)
    with open_regular(name) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise BoundExceeded(f"{what} of {size:,} bytes is larger than the {limit:,} bytes read at most", name)
        data = fh.read(limit + 1)
    if len(data) > limit:  # grew while being read
        raise BoundExceeded(f"{what} is larger than the {limit:,} bytes read at most", name)
    return data


# -- zip archives: each central directory read once per process ------------------------------------
_ZIPS: OrderedDict[tuple[str, int, int, int], zipfile.ZipFile] = OrderedDict()
_ZIPS_LOCK = threading.Lock()
_ZIPS_KEPT = 4


def zip_archive(path: str | Path) -> zipfile.ZipFile:
    """An open `ZipFile` for `path`, shared: opening 4,000 members reads the central directory once,
    not 4,000 times. Kept open for the process (at most a few archives); refuses archives of more than
    MAX_ZIP_MEMBERS members."""
    name = str(path)
    st = os.stat(name)
    _refuse(st, name)
    # the process is part of the key: a forked worker must not share the parent's file offset
    key = (os.path.abspath(name), st.st_mtime_ns, st.st_size, os.getpid())
    with _ZIPS_LOCK:
        archive = _ZIPS.get(key)
        if archive is not None:
            _ZIPS.move_to_end(key)
            return archive
        with open_regular(name) as probe:  # refuse what is not a regular file before zipfile opens it
            del probe
        archive = zipfile.ZipFile(name)
        if len(archive.infolist()) > MAX_ZIP_MEMBERS:
            count = len(archive.infolist())
            archive.close()
            raise BoundExceeded(f"zip archive of {count:,} members (at most {MAX_ZIP_MEMBERS:,} are read)", name)
        _ZIPS[key] = archive
        while len(_ZIPS) > _ZIPS_KEPT:
            _ZIPS.popitem(last=False)[1].close()
        return archive
