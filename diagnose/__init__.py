"""diagnose: explain Forefront TMG "Failed Connection Attempt / Status 64" entries when publishing Exchange."""

import sys as _sys

__version__ = "0.1.0"

if "multiprocessing" in _sys.modules:  # perhaps a worker process being started: Ctrl-C is its parent's
    from diagnose.interrupts import quiet_if_worker as _quiet_if_worker

    _quiet_if_worker()
