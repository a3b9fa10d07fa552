"""Rotated proxy logs in time order, each read once.

logrotate (nginx, HAProxy on Debian and most Linux) renames `access.log` to `access.log.1`, then to
`access.log.2.gz` and so on: the higher the number, the older the file, and the file without a number
is the newest. IIS starts a new `u_exYYMMDD.log` (or `u_exYYMMDDHH.log`) per period, whose names already
sort in time order. A file named twice (a folder and a glob over it, a link to it) is read once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from diagnose.probes.logs import ROTATED, LogInput


def _series(log: LogInput) -> tuple[str, int]:
    """(the rotated series the log belongs to, its number in it: 0 for the current file)."""
    name = log.member or log.path
    folder, base = os.path.split(name)
    found = ROTATED.search(base)
    if found:
        return os.path.join(log.path if log.member else "", folder, base[: found.start(1) - 1]), int(found.group(1))
    if base.lower().endswith(".gz"):
        base = base[:-3]
    return os.path.join(log.path if log.member else "", folder, base), 0


def in_time_order(logs: Sequence[LogInput]) -> list[LogInput]:
    """`logs` (in the order given) with each rotated series oldest first, and each file once."""
    seen: set[tuple[str, str | None]] = set()
    series: dict[str, list[tuple[int, LogInput]]] = {}
    for log in logs:
        identity = (os.path.realpath(log.path), log.member)
        if identity in seen:
            continue
        seen.add(identity)
        key, number = _series(log)
        series.setdefault(key, []).append((number, log))
    ordered: list[LogInput] = []
    for members in series.values():  # a series where its first file was given
        ordered.extend(log for _, log in sorted(members, key=lambda nl: -nl[0]))
    return ordered
