"""Helpers shared by the engine tests."""

from __future__ import annotations

from typing import Any


def timeless(value: Any) -> Any:
    """A JSON report without the clock times of facts made while analysing (answers, the profile):
    two analyses of one bundle differ in them when a second passes in between."""
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items() if k != "time"}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value
