"""How worker processes are started: never a `fork` of a process that runs other threads.

A forked child gets a copy of every lock as it was at the fork, held or not, and only the forking
thread. When another thread held the import lock (or a logging, allocator or I/O lock) at that moment,
the child waits on it forever: `run` and `collect` read logs and captures in probe threads, next to
other probes that import modules as they start. So a process is forked only from a single-threaded
point (the main thread with no other Python thread alive, as in `diagnose probe capture`); otherwise
workers come from the `forkserver` (a clean single-threaded server process, started by fork+exec),
or are spawned where there is no forkserver (Windows).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any


def single_threaded() -> bool:
    """True in the main thread of a process that runs no other Python thread."""
    return threading.current_thread() is threading.main_thread() and threading.active_count() == 1


def start_method(wanted: str | None = None) -> str:
    """ "fork" where it is safe now (see the module doc), else "forkserver", else "spawn".
    `wanted` ("fork" or "spawn") is honoured, except that "fork" falls back the same way when unsafe."""
    methods = multiprocessing.get_all_start_methods()
    if wanted == "spawn":
        return "spawn"
    if "fork" in methods and hasattr(os, "fork") and single_threaded():
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


# what the forkserver imports once, so that its children start with the readers loaded
PRELOAD = ["diagnose.probes.logs", "diagnose.probes.capture.analysis", "diagnose.probes.proxylogs"]


def mp_context(wanted: str | None = None) -> Any:
    """A multiprocessing context for `start_method(wanted)`."""
    return context_for(start_method(wanted))


def context_for(method: str) -> Any:
    """The multiprocessing context of a start method chosen by `start_method`."""
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(PRELOAD)
    return context


# the probes whose readers may start worker processes, and the input size from which they may
WORKER_PROBES = frozenset({"logs", "capture", "proxylogs"})
WORKERS_FROM_BYTES = 16 << 20  # the smallest split size of the readers (logs: SPLIT_AT; captures: 32 MiB)
PACKED = (".gz", ".zip")  # a packed file may hold many times its size


def may_use_workers(paths: Iterable[str], pooled: Sequence[str] = ()) -> bool:
    """Whether reading these inputs may start worker processes: a folder, a glob or a packed file of some
    size may; plain files only when they add up to a split's size. `pooled` are inputs of them read a file
    (or zip member) per worker whatever its size, as the TMG log reader does: two files, or a zip, may."""
    if len(pooled) > 1 or any(str(path).lower().endswith(".zip") for path in pooled):
        return True
    total = 0
    for path in paths:
        try:
            size = os.stat(path).st_size
        except OSError:  # a glob, or missing (the probe says so): assume the worst
            return True
        if os.path.isdir(path) or (path.lower().endswith(PACKED) and size * 8 >= WORKERS_FROM_BYTES):
            return True
        total += size
    return total >= WORKERS_FROM_BYTES


@contextlib.contextmanager
def deaf_children() -> Iterator[None]:
    """Processes started (fork+exec) within the block ignore SIGINT from their first instruction.

    An ignored signal stays ignored through exec, and nothing else does: a blocked mask is cleared by
    multiprocessing's fork_exec, and a handler is reset to the default. So SIGINT is ignored here for the
    moment of the block, and, so that a Ctrl-C pressed meanwhile is not lost for this process, first
    blocked in this thread: while the main thread blocks it, the kernel keeps it pending instead of
    discarding it (when no other thread takes it), and it is delivered once the handler is back.
    Main thread only (signal.signal); elsewhere, or without pthread_sigmask, the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())  # as it is (a Ctrl-C already in is raised here)
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # (one raised here: the mask is restored)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def start_forkserver_deaf_to_ctrl_c() -> None:
    """Start the forkserver (and its resource tracker) now, within `deaf_children()`: they, and the workers
    the forkserver forks, never print a stdlib KeyboardInterrupt traceback in the milliseconds before
    Python has run any of our code there (the Ctrl-C the terminal sends the whole process group); the
    parent stops its workers itself (diagnose.interrupts.leave). Called by `collect` from the main thread
    before its probe threads start, when a probe that may use workers runs; a no-op where there is no
    forkserver or off the main thread."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    if threading.current_thread() is not threading.main_thread():
        return
    from multiprocessing import forkserver, resource_tracker

    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
    # The resource tracker blocks SIGINT around its own start and then unblocks it (rather than restoring
    # the mask): a Ctrl-C kept pending by deaf_children would go to SIG_IGN there, and be lost (2 of 30
    # trials). SIGINT is ignored already, so its own block is switched off for the moment.
    masking = getattr(resource_tracker, "_HAVE_SIGMASK", None)
    with deaf_children():
        if masking is not None:
            resource_tracker._HAVE_SIGMASK = False  # type: ignore[attr-defined]  # private: read with getattr above
        try:
            forkserver.ensure_running()
        finally:
            if masking is not None:
                resource_tracker._HAVE_SIGMASK = masking  # type: ignore[attr-defined]  # as above
