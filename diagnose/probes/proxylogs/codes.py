"""Win32, Winsock, WinHTTP and HRESULT codes as IIS, ARR and Exchange write them, decoded to names.

IIS writes `sc-win32-status` in decimal (`64`, `1236`, `12002`); ARR and Exchange sometimes write the
HRESULT instead, in hex (`0x80072ee2`) or as its decimal (`2147954402`) or signed (`-2147012894`)
value. An HRESULT of the form 0x8007xxxx (HRESULT_FROM_WIN32, facility 7) is the Win32 code xxxx, so
`decode()` gives 12002 ERROR_WINHTTP_TIMEOUT for all of them and keeps the spelling it was given.

Sources: winerror.h (Win32 and HRESULT), winsock2.h (WSA*), winhttp.h (ERROR_WINHTTP_*).
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

# code -> (name, what it means for a proxied connection)
NAMES: dict[int, str] = {
    0: "ERROR_SUCCESS",
    2: "ERROR_FILE_NOT_FOUND",
    5: "ERROR_ACCESS_DENIED",
    64: "ERROR_NETNAME_DELETED",
    121: "ERROR_SEM_TIMEOUT",
    995: "ERROR_OPERATION_ABORTED",
    1229: "ERROR_CONNECTION_INVALID",
    1236: "ERROR_CONNECTION_ABORTED",
    1326: "ERROR_LOGON_FAILURE",
    10053: "WSAECONNABORTED",
    10054: "WSAECONNRESET",
    10060: "WSAETIMEDOUT",
    10061: "WSAECONNREFUSED",
    10065: "WSAEHOSTUNREACH",
    11001: "WSAHOST_NOT_FOUND",
    12002: "ERROR_WINHTTP_TIMEOUT",
    12007: "ERROR_WINHTTP_NAME_NOT_RESOLVED",
    12029: "ERROR_WINHTTP_CANNOT_CONNECT",
    12030: "ERROR_WINHTTP_CONNECTION_ERROR",
    12031: "ERROR_WINHTTP_RESEND_REQUEST",
    12152: "ERROR_WINHTTP_INVALID_SERVER_RESPONSE",
    12175: "ERROR_WINHTTP_SECURE_FAILURE",
}

# What a code says about the connection, in the words the facts count by.
GROUPS: dict[int, str] = {
    64: "connection_closed",
    995: "connection_closed",
    1229: "connection_closed",
    1236: "connection_closed",
    10053: "connection_closed",
    10054: "connection_reset",
    12030: "connection_reset",
    12031: "connection_reset",
    121: "timed_out",
    10060: "timed_out",
    12002: "timed_out",
    10061: "refused",
    12029: "refused",
    10065: "unreachable",
    11001: "name_not_resolved",
    12007: "name_not_resolved",
    12152: "bad_response",
    12175: "tls_failure",
}

_FACILITY_WIN32 = 0x80070000


class Code(NamedTuple):
    """A decoded code: `value` the Win32 code (None: not a number), `text` as logged."""

    value: int | None
    text: str
    name: str
    group: str

    def label(self) -> str:
        """`64 ERROR_NETNAME_DELETED`, `0x80072ee2 ERROR_WINHTTP_TIMEOUT`, or the text as logged."""
        return f"{self.text} {self.name}" if self.name else self.text


@lru_cache(maxsize=4096)
def decode(text: str) -> Code:
    """A code as logged (decimal, hex HRESULT, signed HRESULT) -> its Win32 value, name and group."""
    raw = text.strip()
    try:
        number = int(raw, 16) if raw[:2].lower() == "0x" else int(raw)
    except ValueError:
        return Code(None, raw, "", "")
    number &= 0xFFFFFFFF
    if number & 0xFFFF0000 == _FACILITY_WIN32:
        number &= 0xFFFF
    return Code(number, raw, NAMES.get(number, ""), GROUPS.get(number, ""))
