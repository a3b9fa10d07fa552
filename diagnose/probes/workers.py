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

import multiprocessing
import os
import threading
from typing import Any


def single_threaded() -> bool:
    """True in the main thread of a process that runs no other Python thread."""
    return threading.current_thread() is threading.main_thread() and threading.active_count() == 1


def start_method(wanted: str | None = None) -> str:
    """"fork" where it is safe now (see the module doc), else "forkserver", else "spawn".
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
