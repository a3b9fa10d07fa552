"""Text that came from the evidence, made safe to show: on a terminal, in Markdown, in HTML, in JSON.

Evidence is hostile input: a certificate name, a service display name or a log field may carry
terminal escape sequences (ESC, CSI), bidirectional overrides that reorder what is read, or bytes
that are not UTF-8 (file names, decoded with surrogate escapes). Everything the tool writes goes
through one of these functions:

* `neutralise(text)`: every control character (C0 but the kept ones, DEL, C1), every bidi control
  and line/paragraph separator becomes a visible escape (`\\x1b`, `\\u202e`); a lone surrogate
  becomes the byte it stood for (`\\xff`) or its code (`\\ud800`). The result is printable and
  encodes as UTF-8.
* `markdown(text)`: neutralised (newlines too), and Markdown's own syntax escaped: HTML tags,
  table pipes, link and image syntax, emphasis, backticks.
* `to_json(value)`: JSON text, lossless for every valid string (bidi controls, C1 and DEL as
  `\\uXXXX` escapes), with lone surrogates written as printable escaped bytes, so the output is
  always valid UTF-8.
"""

from __future__ import annotations

import json
import re
from typing import Any

_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029)
_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}


def _escape(code: int) -> str:
    if code in _NAMED:
        return _NAMED[code]
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, decoded with surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


_CONTROLS = (*range(0x00, 0x20), *range(0x7F, 0xA0), *_BIDI)
_SURROGATES = tuple(range(0xD800, 0xE000))
_TABLE: dict[int, str] = {code: _escape(code) for code in (*_CONTROLS, *_SURROGATES)}
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# in JSON text: what json.dumps(ensure_ascii=False) leaves raw (C0 it escapes itself)
_JSON_TABLE: dict[int, str] = {code: f"\\u{code:04x}" for code in (*range(0x7F, 0xA0), *_BIDI)}
_JSON_TABLE.update({code: "\\" + _escape(code) for code in _SURROGATES})
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]")
_MARKDOWN = {ord(c): "\\" + c for c in "\\`*_{}[]()#+!|~"}
_MARKDOWN.update({ord("<"): "&lt;", ord(">"): "&gt;", ord("&"): "&amp;"})


def neutralise(text: str, keep: str = "") -> str:
    """`text` with every control, bidi and surrogate character shown as an escape; `keep` names the
    characters left as they are (`"\\n"` for a whole multi-line report)."""
    if not _UNSAFE.search(text):
        return text
    if not keep:
        return _UNSAFE.sub(_escaped, text)
    return _UNSAFE.sub(lambda m: m.group() if m.group() in keep else _TABLE[ord(m.group())], text)


def _escaped(m: re.Match[str]) -> str:
    return _TABLE[ord(m.group())]


def printable(text: str) -> str:
    """`text` with each lone surrogate (a byte that was not UTF-8 in a file name, or a `\\ud800` in
    JSON) written as its escape, so that it encodes as UTF-8 and the rule engine accepts it."""
    return _SURROGATE.sub(_escaped, text) if _SURROGATE.search(text) else text


def printable_data(value: Any) -> Any:
    """Parsed JSON (or a fact's values) with every string `printable`."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, list):
        return [printable_data(v) for v in value]
    if isinstance(value, tuple):
        return tuple(printable_data(v) for v in value)
    if isinstance(value, dict):
        return {printable(k): printable_data(v) for k, v in value.items()}
    return value


def markdown(text: str) -> str:
    """Evidence text for a Markdown line or table cell: neutralised, its Markdown syntax escaped."""
    return neutralise(text).translate(_MARKDOWN)


def to_json(value: Any, indent: int | None = 1) -> str:
    """JSON text that is valid UTF-8 and shows no control or bidi character raw (see the module)."""
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda m: _JSON_TABLE[ord(m.group())], text) if _JSON_UNSAFE.search(text) else text
