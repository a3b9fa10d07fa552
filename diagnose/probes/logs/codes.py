"""Result codes as TMG and ISA Server write them, reduced to one canonical value.

The same result appears in many spellings: the Web Proxy log writes decimal (`64`, `10061`, `200`),
the Firewall log writes an HRESULT in hex (`0x80070040`, `0xc004000d`), Live Logging and the log
viewer append the symbolic name or the message (`0x80074e20 FWX_E_GRACEFUL_SHUTDOWN`,
`64 The specified network name is no longer available.`), SQL exports hold a signed 32-bit integer
(`-2147024832`). `result_code(text)` turns any of these into a `ResultCode`; an HRESULT of the form
0x8007xxxx (HRESULT_FROM_WIN32) is unwrapped to the Win32 code xxxx, so Status 64 is 64 however it
was written. The catalogue itself is data: `result_codes.yaml` beside this module.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from diagnose.compat import SLOTS
from diagnose.errors import RuleError
from diagnose.yamlio import load_yaml

CATALOGUE = Path(__file__).with_name("result_codes.yaml")
STATUS64 = 64
GROUPS = (
    "status64",
    "host_not_found",
    "timed_out",
    "refused",
    "address_in_use",
    "no_buffers",
    "connection_killed",
    "cert_name_mismatch",
    "cert",
    "flood",
    "teardown",
    "graceful",
    "auth_challenge",
)


@dataclass(frozen=True, **SLOTS)
class CodeInfo:
    value: int
    name: str
    text: str
    group: str = ""


@dataclass(frozen=True, **SLOTS)
class ResultCode:
    """A result as normalised: `value` is None when the text held no recognisable code."""

    value: int | None
    name: str = ""
    group: str = ""

    @property
    def is_http(self) -> bool:
        return self.value is not None and 100 <= self.value <= 599 and not self.name

    @property
    def label(self) -> str:
        if self.value is None:
            return "-"
        shown = f"0x{self.value:08x}" if self.value > 0xFFFF else str(self.value)
        return f"{shown} {self.name}" if self.name else shown


@dataclass(frozen=True)
class Catalogue:
    by_value: dict[int, CodeInfo]
    by_name: dict[str, CodeInfo]
    by_text: dict[str, CodeInfo]


def _canonical(value: int) -> int:
    value &= 0xFFFFFFFF
    if value >> 16 == 0x8007:  # HRESULT_FROM_WIN32
        return value & 0xFFFF
    return value


def _text_key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


@functools.lru_cache(maxsize=None)
def catalogue() -> Catalogue:
    data, lines = load_yaml(CATALOGUE)
    if not isinstance(data, dict) or not isinstance(data.get("codes"), dict):
        raise RuleError("result code catalogue must map `codes` to entries", lines.at())
    by_value: dict[int, CodeInfo] = {}
    for key, entry in data["codes"].items():
        where = lines.at("codes", key)
        try:
            value = _canonical(int(str(key), 0))
        except ValueError:
            raise RuleError(f"result code {key!r} is not a number", where) from None
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise RuleError("a result code needs a name", where)
        group = str(entry.get("group", ""))
        if group and group not in GROUPS:
            raise RuleError(f"unknown result code group {group!r}", where)
        by_value[value] = CodeInfo(value, entry["name"], str(entry.get("text", "")), group)
    by_name = {info.name.upper(): info for info in by_value.values()}
    by_text = {_text_key(info.text): info for info in by_value.values() if info.text}
    return Catalogue(by_value, by_name, by_text)


_LEAD = re.compile(r"^\s*(?:status:\s*)?(-?0x[0-9a-fA-F]+|-?\d+)\b\s*(.*)$", re.IGNORECASE | re.DOTALL)


@functools.lru_cache(maxsize=4096)
def result_code(text: str) -> ResultCode:
    """Normalise one logged result, e.g. `0x80070040`, `64`, `ERROR_NETNAME_DELETED`, `-2147024832`."""
    cat = catalogue()
    text = text.strip()
    if not text or text == "-":
        return ResultCode(None)
    match = _LEAD.match(text)
    if match:
        token = match.group(1)
        try:
            value = _canonical(int(token, 16) if "x" in token.lower() else int(token))
        except ValueError:
            value = None
        if value is not None:
            info = cat.by_value.get(value)
            return ResultCode(value, info.name, info.group) if info else ResultCode(value)
    word = text.split()[0].upper()
    info = cat.by_name.get(word) or cat.by_text.get(_text_key(text))
    if info is not None:
        return ResultCode(info.value, info.name, info.group)
    return ResultCode(None)


def describe(value: int) -> CodeInfo | None:
    return catalogue().by_value.get(value)
