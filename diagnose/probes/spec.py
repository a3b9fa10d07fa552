"""Reading probe parameters (a check's filled-in `params`): one way for every probe.

Absent, None and "" always mean "not given", so a check can pass "{key}" for a profile field that
is not set and the probe falls back to its default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diagnose.errors import UsageError


def spec_list(spec: Mapping[str, Any], key: str, split: bool = False) -> list[str]:
    """A list parameter: absent, None, "" and [] are all empty; a lone string is a one-item list
    (or, with `split`, comma-separated items, as typed on a command line)."""
    value = spec.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()] if split else [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v is not None and str(v) != ""]
    raise UsageError(f"parameter {key!r} must be a string or a list of strings")


def spec_text(spec: Mapping[str, Any], key: str) -> str | None:
    value = spec.get(key)
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, (list, tuple)):
        return str(value[0]) if value else None
    return str(value)


def spec_number(spec: Mapping[str, Any], key: str, default: float) -> float:
    value = spec.get(key)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"parameter {key!r} must be a number, got {value!r}") from None
    if number <= 0:
        raise UsageError(f"parameter {key!r} must be positive")
    return number


def spec_port(spec: Mapping[str, Any], key: str, default: int) -> int:
    value = spec.get(key)
    if value is None or value == "":
        return default
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"parameter {key!r} must be a port number, got {value!r}") from None
    if not 0 < port < 65536:
        raise UsageError(f"parameter {key!r} must be from 1 to 65535")
    return port


def spec_bool(spec: Mapping[str, Any], key: str, default: bool) -> bool:
    value = spec.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise UsageError(f"parameter {key!r} must be true or false, got {value!r}")
