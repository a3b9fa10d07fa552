"""Ctrl-C, the same way every time: no traceback, no process left behind, exit 130.

The command line calls `install()` first thing, in the main thread. From then on:

* SIGINT raises KeyboardInterrupt in the main thread as usual, and is also remembered (`pending()`).
  Python cannot raise it inside a finaliser or a weakref callback (it prints "Exception ignored ...
  KeyboardInterrupt" there and goes on); such an interrupt is recorded quietly instead, and the command
  leaves at its next checkpoint (`leave_if_pending()`).
* `leave(code)` ends the process at once: Ctrl-C is ignored from then on (a second one, or the one the
  terminal sends the whole process group, must not start a second exit), standard output and error are
  flushed, every child process (capture and log workers, the engine worker, their own children) is
  stopped, and the process exits without running the interpreter's shutdown, which would wait for
  abandoned probe threads.
* Code that waits on other threads (the collect stage) runs `with deferred():` and polls `pending()`:
  there Ctrl-C only sets the flag, and the waiter raises KeyboardInterrupt itself at a safe point. An
  exception raised asynchronously inside concurrent.futures' lock handling can leave a lock released
  twice (RuntimeError: release unlocked lock, printed by a pool thread).
* Probe threads call `shield_thread()`: SIGINT is blocked in them, so the kernel always hands it to the
  main thread, and a worker process forked from a probe thread starts with it blocked too (its parent
  stops it; it never prints a KeyboardInterrupt traceback of its own).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from diagnose.exitcodes import ExitCode

EXIT_INTERRUPTED = ExitCode.INTERRUPTED  # 130: 128 + SIGINT, as shells report a command ended by Ctrl-C
STOP_GRACE = 1.0  # seconds a child has to end after SIGTERM before it is killed

_interrupted = threading.Event()


def install() -> None:
    """Route SIGINT and swallowed KeyboardInterrupts through this module (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _on_interrupt)
    sys.unraisablehook = _unraisable


def _on_interrupt(_signum: int, _frame: Any) -> None:
    _interrupted.set()
    raise KeyboardInterrupt


def _record(_signum: int, _frame: Any) -> None:
    _interrupted.set()


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within the block, Ctrl-C only sets `pending()`; the code inside polls it (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _record)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _unraisable(info: Any) -> None:
    """An interrupt Python could not raise (it arrived in a finaliser or callback) is kept, not printed."""
    if info.exc_type is not None and issubclass(info.exc_type, KeyboardInterrupt):
        _interrupted.set()
        return
    sys.__unraisablehook__(info)


def pending() -> bool:
    """Whether Ctrl-C was pressed (even if its KeyboardInterrupt was swallowed on the way)."""
    return _interrupted.is_set()


def shield_thread() -> None:
    """Block SIGINT in the calling (non-main) thread: Ctrl-C is the main thread's to handle."""
    if threading.current_thread() is threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def ignore() -> None:
    """Ignore Ctrl-C from now on (main thread only): the process is on its way out."""
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def leave(code: int = EXIT_INTERRUPTED, message: str | None = None) -> None:
    """Print `message` on stderr, stop every child process, and exit with `code` at once."""
    ignore()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if stream is sys.stderr and message:
                stream.write(message + "\n")
            stream.flush()
    adopt_orphans()
    _no_more_forks()
    stop_children()
    _unlink_semaphores()
    os._exit(int(code))


def _no_more_forks() -> None:
    """Keep abandoned probe threads from starting new workers while this process leaves: os.fork() takes
    the import lock first, and this thread now holds it until the end (psutil is imported before); a
    forkserver child or a new forkserver or resource tracker is asked for under multiprocessing's own
    locks, which this thread holds too (for a moment at most: a thread may hold one while it starts a
    process, which is then a child the looks of stop_children find)."""
    with contextlib.suppress(ImportError):
        import psutil  # noqa: F401 - imported now, not under the lock
    import _imp

    _imp.acquire_lock()
    for module, attribute in (
        ("multiprocessing.forkserver", "_forkserver"),
        ("multiprocessing.resource_tracker", "_resource_tracker"),
    ):
        lock = getattr(getattr(sys.modules.get(module), attribute, None), "_lock", None)
        if lock is not None:
            lock.acquire(timeout=STOP_GRACE)  # never released: the process is leaving


def _unlink_semaphores() -> None:
    """Remove the named semaphores of this process's multiprocessing queues and locks from /dev/shm.

    Outside `fork`, each lives until its finaliser unlinks it, or until the resource tracker does when
    every process that uses it has ended. Leaving runs no finaliser, and the tracker ignores SIGTERM, so
    stop_children kills it: without this, each Ctrl-C of a run with log workers left four files behind."""
    util = sys.modules.get("multiprocessing.util")
    synchronize = sys.modules.get("multiprocessing.synchronize")
    cleanup = getattr(getattr(synchronize, "SemLock", None), "_cleanup", None)
    if util is None or cleanup is None:
        return
    try:
        from _multiprocessing import sem_unlink
    except ImportError:  # no named semaphores here (Windows)
        return
    for finaliser in list(getattr(util, "_finalizer_registry", {}).values()):
        if getattr(finaliser, "_callback", None) is cleanup:
            for name in getattr(finaliser, "_args", None) or ():
                with contextlib.suppress(OSError):
                    sem_unlink(name)


PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def adopt_orphans() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux): a worker the forkserver forks
    just before it is stopped would otherwise go to init, out of reach of stop_children, and run on with
    Ctrl-C ignored. True when the kernel agreed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):  # no libc with prctl: orphans go to init as before
        return False


def leave_if_pending(message: str = "diagnose: interrupted") -> None:
    """A checkpoint: leave with 130 if Ctrl-C was pressed and its KeyboardInterrupt got lost."""
    if pending():
        leave(EXIT_INTERRUPTED, message)


def stop_children(grace: float = STOP_GRACE, rounds: int = 8) -> None:
    """Stop every descendant process: SIGTERM, then SIGKILL for those still there after `grace` s.

    Probe threads abandoned by Ctrl-C keep running meanwhile and may start new workers, so the
    descendants are looked for again until a look finds none (at most `rounds` looks)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency
        return
    empty_looks = 0
    for _ in range(rounds):
        try:
            children = psutil.Process().children(recursive=True)
        except psutil.Error:  # one vanished while the tree was walked: look again
            continue
        if not children:
            empty_looks += 1
            if empty_looks == 2:  # twice, a moment apart: no worker was being started in between
                return
            time.sleep(0.02)
            continue
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.terminate()
        _gone, alive = psutil.wait_procs(children, timeout=grace)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(alive, timeout=grace)
