"""A logged field as text, and the bytes that mark a damaged line (shared by every log reader)."""

from __future__ import annotations

import re

_GARBAGE = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_GARBAGE_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])  # what _GARBAGE matches, for translate


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    try:
        return value.decode("utf-8").strip()
    except UnicodeDecodeError:
        return value.decode("cp1252", "replace").strip()
