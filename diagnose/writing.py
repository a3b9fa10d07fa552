"""Every file the tool writes (bundles, reports, probe output, saved profiles, new rules) goes through
`write_file`: the bytes go to a temporary file in the target's folder, are flushed to disk (fsync), and
the temporary file is renamed over the target. A crash, a kill -9 or a full disk at any moment leaves
either the previous file or the new one, whole; never a truncated mix. A write that fails is one
OutputError naming the file (exit 2), and the temporary file is removed.

A target that exists and is not a regular file (/dev/stdout, /dev/null, a FIFO) is written in place:
renaming over a device would replace it, and the tool never changes the host.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from functools import lru_cache
from pathlib import Path

from diagnose.errors import OutputError

_REASONS = {
    errno.ENOENT: "the folder does not exist",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EROFS: "the folder is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOSPC: "no space left on the device",
    getattr(errno, "EDQUOT", -1): "disk quota exceeded",
    errno.EISDIR: "it is a folder",
    errno.EFBIG: "the file is too large for the file system",
}


def reason(exc: OSError) -> str:
    """A short, plain description of why a write failed."""
    return _REASONS.get(exc.errno or 0, exc.strerror or str(exc))


@lru_cache(maxsize=None)
def _new_file_mode() -> int:
    """The mode an ordinary open() gives a new file: 0o666 less the umask (read once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_file(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write `data` (text is UTF-8) to `path` atomically; raise OutputError naming the path on failure."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    target = Path(path)
    try:
        info = os.stat(target)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise OutputError(f"cannot write: {reason(exc)}", str(target)) from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise OutputError("cannot write: it is a folder", str(target))
    if info is not None and not stat.S_ISREG(info.st_mode):
        _write_in_place(target, payload)
        return
    real = Path(os.path.realpath(target)) if target.is_symlink() else target  # keep a symlink, write its file
    mode = stat.S_IMODE(info.st_mode) if info is not None else _new_file_mode()
    import tempfile  # (here: a command that prints to standard output does not load it)

    try:
        fd, temp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".partial", dir=str(real.parent))
    except OSError as exc:
        raise OutputError(f"cannot write: {reason(exc)}", str(target)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(temp, mode)
        os.replace(temp, real)
    except BaseException as exc:  # an error, Ctrl-C included: the temporary file goes, the target stays
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write: {reason(exc)}", str(target)) from None
        raise
    _sync_folder(real.parent)


def _write_in_place(target: Path, payload: bytes) -> None:
    try:
        with open(target, "wb") as fh:
            fh.write(payload)
    except OSError as exc:
        raise OutputError(f"cannot write: {reason(exc)}", str(target)) from None


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); where a folder cannot be opened, the rename stands as is."""
    flags = getattr(os, "O_DIRECTORY", None)
    if flags is None:
        return
    try:
        fd = os.open(str(folder), os.O_RDONLY | flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
