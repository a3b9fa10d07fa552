"""What Python 3.9 to 3.11 added that the tool uses, for CPython 3.8: the last Python that runs on
Windows Server 2008 R2, TMG 2010's only platform. Each name is the standard one where the running
Python has it.

* `UTC`: `datetime.UTC` (3.11).
* `StrEnum`: `enum.StrEnum` (3.11); before, a str-valued Enum whose str() and format() are the value.
* `SLOTS`: `@dataclass(frozen=True, **SLOTS)` gives slotted dataclasses from 3.10 on, plain ones before.
* `zip_strict`: `zip(..., strict=True)` (3.10); before, a plain zip (the check is for our own bugs).
* `removeprefix` / `removesuffix`: the str and bytes methods (3.9) as functions.
* `ZoneInfo`, `ZoneInfoNotFoundError`: `zoneinfo` (3.9); before, the `backports.zoneinfo` package.
* `waitstatus_to_exitcode`: `os.waitstatus_to_exitcode` (3.9, POSIX here).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from concurrent.futures import Executor, Future
from datetime import timezone
from enum import Enum
from functools import partial
from typing import Any, AnyStr

UTC = timezone.utc

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:

    class StrEnum(str, Enum):
        """An Enum whose members are strings, printed as their value."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return str(self.value).__format__(spec)


SLOTS: dict[str, Any] = {"slots": True} if sys.version_info >= (3, 10) else {}

zip_strict: Any = partial(zip, strict=True) if sys.version_info >= (3, 10) else zip

if sys.version_info >= (3, 9):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
else:  # the dependency is declared for Python < 3.9 only
    from backports.zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def removeprefix(text: AnyStr, prefix: AnyStr) -> AnyStr:
    return text[len(prefix) :] if prefix and text.startswith(prefix) else text


def removesuffix(text: AnyStr, suffix: AnyStr) -> AnyStr:
    return text[: -len(suffix)] if suffix and text.endswith(suffix) else text


def shutdown_cancelling(pool: Executor, futures: Iterable[Future[Any]], wait: bool) -> None:
    """`pool.shutdown(wait, cancel_futures=True)` (3.9): the futures not yet started are cancelled."""
    if sys.version_info >= (3, 9):
        pool.shutdown(wait=wait, cancel_futures=True)
        return
    for future in futures:
        future.cancel()
    pool.shutdown(wait=wait)


def waitstatus_to_exitcode(status: int) -> int:
    """The exit code of a child from its wait status; minus the signal number when a signal ended it."""
    if hasattr(os, "waitstatus_to_exitcode"):
        return int(os.waitstatus_to_exitcode(status))
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


__all__ = [
    "SLOTS",
    "UTC",
    "StrEnum",
    "ZoneInfo",
    "ZoneInfoNotFoundError",
    "removeprefix",
    "removesuffix",
    "shutdown_cancelling",
    "waitstatus_to_exitcode",
    "zip_strict",
]
