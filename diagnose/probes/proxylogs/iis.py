"""IIS W3C extended logs (IIS 7.5, 8.5, 10; Exchange front-end and back-end sites; ARR).

Fields are space separated under a `#Fields:` header (spaces inside values are written `+`). The
figures come from `sc-status`, `sc-substatus`, `sc-win32-status` (decoded: 64 ERROR_NETNAME_DELETED,
1236 ERROR_CONNECTION_ABORTED, 12002 ERROR_WINHTTP_TIMEOUT, an HRESULT such as 0x80072ee2...),
`time-taken` and the request (`cs-method`, `cs-uri-stem`, `cs-uri-query`: EAS Cmd=Ping,
RPC_IN_DATA / RPC_OUT_DATA, MAPI NotificationWait). Records are scoped by `s-sitename` (W3SVC1 is
the Exchange front end, W3SVC2 the back end), or by `s-port` when the site is not logged. ARR's
502.3 (the back end did not answer in time or closed) is its own class.
"""

from __future__ import annotations

from diagnose.probes.proxylogs.codes import decode
from diagnose.probes.proxylogs.tally import Key, KeyInfo, http_classes, long_poll_classes, text
from diagnose.probes.proxylogs.w3c import Dialect

PRODUCT = "iis"


def classify(key: Key) -> KeyInfo:
    scope, status, sub, win32, _, _ = key
    st, sb = text(status), text(sub)
    code = decode(text(win32)) if text(win32) not in ("", "-") else None
    classes = http_classes(st)
    if st == "502" and sb == "3":
        classes.append("arr_502_3")
    group = code.group if code is not None else ""
    if group:
        classes.append(group)
    classes += long_poll_classes(key, st[:1] == "5" or bool(group), st)
    label = f"{st}.{sb}" if sb not in ("", "-", "0") else st
    listed = code.label() if code is not None and code.value != 0 else ""
    where = text(scope)
    return KeyInfo(f"site:{where}" if where and where != "-" else "", label, listed, tuple(classes))


DIALECT = Dialect(
    PRODUCT,
    b" ",
    {
        "scope": ("s-sitename",),
        "status": ("sc-status",),
        "sub": ("sc-substatus",),
        "code": ("sc-win32-status",),
        "method": ("cs-method",),
        "stem": ("cs-uri-stem",),
        "query": ("cs-uri-query",),
        "ms": ("time-taken",),
        "date": ("date",),
        "time": ("time",),
    },
    classify,
)
