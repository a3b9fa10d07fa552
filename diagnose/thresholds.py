"""The log probes' thresholds as data: `checks/thresholds.yaml`, read once and checked against the
schema below (type and bounds of every value); every error names file:line.

The shipped file is the default; a directory in DIAGNOSE_CHECKS holding its own `thresholds.yaml`
replaces it (the last one wins).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from diagnose.errors import RuleError
from diagnose.paths import table_path
from diagnose.yamlio import load_yaml

THRESHOLDS_FILE = "thresholds.yaml"


@dataclass(frozen=True)
class Thresholds:
    coincidence_window: int  # seconds between a Status 64 entry and the same client's visible failure
    burst_floor: int  # Status 64 entries a burst minute has at least ...
    burst_factor: int  # ... and at least this many times the median per active minute
    oa_long_ms: int  # an Outlook Anywhere channel open at least this long is long-lived
    idle_min_failed: int  # failed long polls needed before a cluster means anything
    idle_min_share: float  # share of the failed long polls at one value for a cluster
    eas_min_heartbeat: int  # Exchange's default MinHeartbeatInterval, seconds


# field -> (section, key in the file, type, lowest, highest)
SCHEMA: dict[str, tuple[str, str, type, float, float]] = {
    "coincidence_window": ("logs", "coincidence_window_seconds", int, 1, 3600),
    "burst_floor": ("logs", "burst_floor", int, 1, 1_000_000),
    "burst_factor": ("logs", "burst_factor", int, 1, 1000),
    "oa_long_ms": ("logs", "outlook_anywhere_long_ms", int, 1, 86_400_000),
    "idle_min_failed": ("proxylogs", "idle_min_failed", int, 1, 1_000_000),
    "idle_min_share": ("proxylogs", "idle_min_share", float, 0.01, 1.0),
    "eas_min_heartbeat": ("proxylogs", "eas_min_heartbeat_seconds", int, 1, 86400),
}
assert set(SCHEMA) == {f.name for f in fields(Thresholds)}


def thresholds_path(dirs: Sequence[Path] | None = None) -> Path:
    return table_path(THRESHOLDS_FILE, dirs)


def thresholds(dirs: Sequence[Path] | None = None) -> Thresholds:
    """The thresholds in force: the shipped file unless one of `dirs` (DIAGNOSE_CHECKS) has its own."""
    return load_thresholds(str(thresholds_path(dirs)))


@functools.lru_cache(maxsize=None)
def load_thresholds(path: str) -> Thresholds:
    data, lines = load_yaml(path)
    sections = sorted({section for section, *_ in SCHEMA.values()})
    if not isinstance(data, dict):
        raise RuleError(f"the thresholds file is a mapping of sections ({', '.join(sections)})", lines.at())
    for section, body in data.items():
        if section not in sections:
            raise RuleError(f"unknown section {section!r} (one of {', '.join(sections)})", lines.at(section, "<key>"))
        known = [key for sec, key, *_ in SCHEMA.values() if sec == section]
        if not isinstance(body, dict):
            raise RuleError(f"{section} is a mapping of thresholds", lines.at(section))
        for key in body:
            if key not in known:
                raise RuleError(
                    f"unknown threshold {key!r} in {section} (known: {', '.join(known)})",
                    lines.at(section, key, "<key>"),
                )
    values: dict[str, Any] = {}
    for name, (section, key, kind, lowest, highest) in SCHEMA.items():
        entry = (data.get(section) or {}).get(key)
        at = (section, key)
        if not isinstance(entry, dict) or set(entry) - {"value", "why"} or "value" not in entry:
            raise RuleError(f"{section}.{key} must be given as {{value, why}}", lines.at(*at))
        if not isinstance(entry.get("why"), str) or not entry["why"].strip():
            raise RuleError(f"{section}.{key}: say why the value is what it is (why: ...)", lines.at(*at))
        value = entry["value"]
        number = isinstance(value, int) or (kind is float and isinstance(value, float))
        if isinstance(value, bool) or not number or not lowest <= value <= highest:
            what = "a whole number" if kind is int else "a number"
            raise RuleError(
                f"{section}.{key} must be {what} from {lowest:g} to {highest:g}, got {value!r}", lines.at(*at, "value")
            )
        values[name] = kind(value)
    return Thresholds(**values)
