"""diagnose: explain Forefront TMG "Failed Connection Attempt / Status 64" entries when publishing Exchange."""

import sys as _sys

if "multiprocessing" in _sys.modules:  # perhaps a worker process being started: Ctrl-C is its parent's
    # A spawned worker runs `python -c ... --multiprocessing-fork` (its own arguments are in orig_argv,
    # Python 3.10+; sys.argv is its parent's meanwhile) and knows its parent only once started. The
    # terminal sends SIGINT to the whole process group; the parent stops its workers itself
    # (diagnose.interrupts.leave), so a worker ignores it from here on, before anything else is imported.
    # A forkserver runs `python -c "from multiprocessing.forkserver import main; ..."` and imports its
    # preloaded modules (this package) before it ignores SIGINT itself; its workers keep what it had.
    _argv = getattr(_sys, "orig_argv", [])
    _mp = _sys.modules["multiprocessing"]
    if (
        "--multiprocessing-fork" in _argv[-1:]
        or any("multiprocessing.forkserver" in _a for _a in _argv)
        or _mp.parent_process() is not None
    ):
        import signal as _signal

        if _signal.getsignal(_signal.SIGINT) is not _signal.SIG_IGN:
            _signal.signal(_signal.SIGINT, _signal.SIG_IGN)

import warnings as _warnings

__version__ = "0.1.0"

if _sys.version_info < (3, 9):  # the TMG host's Python: cryptography's notice that 3.8 is old, on every run
    _warnings.filterwarnings("ignore", message=r"Python 3\.8 is no longer supported")
