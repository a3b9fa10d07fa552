"""The exit codes of `diagnose`: one table. README.md ("Exit codes") shows the same table, and
tests/test_exitcodes.py holds the two to each other. Errors take theirs from it (diagnose/errors.py),
Ctrl-C too (diagnose/interrupts.py), and the command line exits only through diagnose/session.py."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # diagnosis done (or the command succeeded)
    FINDING = 1  # a misconfiguration or fault cause reached --fail-on CERTAINTY
    USAGE = 2  # usage error, input that cannot be read, or output that cannot be written
    RULES = 3  # rule, check, profile or answers error, or the rule engine failed
    INCOMPLETE = 4  # evidence incomplete under --strict
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it): no traceback, no process left behind
