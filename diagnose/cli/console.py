"""Output that never fails on a console or redirect that cannot show every character.

A Windows console or redirect writes in the ANSI or OEM code page (cp1252, cp850, cp936...) unless
Python was told otherwise, and a report can hold what those cannot encode: the rule words ≥ ≤ ≠, the
ellipsis of a NetMon flag column, computer or user names in other scripts. Such a stream gets the
error handler below: the rule symbols become their ASCII spelling (>=, <=, !=, ...), anything else
unencodable a '?'. Streams in UTF-8 are left alone, and so are files written with -o (UTF-8).
"""

from __future__ import annotations

import codecs
import io
import sys
from typing import Any

HANDLER = "diagnose-replace"
SPELLINGS = {"≥": ">=", "≤": "<=", "≠": "!=", "…": "...", "±": "+-", "→": "->", "←": "<-", "×": "x", "·": "."}


def _replace(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    bad = error.object[error.start : error.end]
    out = []
    for ch in bad:
        spelled = SPELLINGS.get(ch, "?")
        try:
            spelled.encode(error.encoding)
        except (UnicodeError, LookupError):
            spelled = "?"
        out.append(spelled)
    return "".join(out), error.end


codecs.register_error(HANDLER, _replace)


def _is_utf(encoding: str | None) -> bool:
    return (encoding or "").lower().replace("_", "-") in ("utf-8", "utf8", "utf-16", "utf-32", "utf-8-sig")


def tolerant(stream: Any) -> None:
    """Give a text stream that cannot encode everything the replacing error handler (in place)."""
    if isinstance(stream, io.TextIOWrapper) and not _is_utf(stream.encoding) and stream.errors == "strict":
        stream.reconfigure(errors=HANDLER)


def tolerant_std_streams() -> None:
    tolerant(sys.stdout)
    tolerant(sys.stderr)
