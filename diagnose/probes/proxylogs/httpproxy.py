"""Exchange 2013+ HttpProxy logs (Logging\\HttpProxy\\<protocol>\\HttpProxy_*.LOG).

CSV under `#Software: Microsoft Exchange Server`, `#Log-type: HttpProxy Logs` and a `#Fields:`
header of comma-separated names; values holding a comma are quoted. The figures come from
`HttpStatus`, `BackEndStatus` (the back end's answer to the proxied request), `ErrorCode` (decoded
when it is a number), `TotalRequestTime` and the request (`Method`, `UrlStem`, `UrlQuery`,
`ProtocolAction`: EAS Ping, RPC_IN_DATA / RPC_OUT_DATA, MAPI NotificationWait). Records are scoped
by `Protocol` (Eas, RpcHttp, Mapi, Owa...).
"""

from __future__ import annotations

from diagnose.probes.proxylogs.codes import decode
from diagnose.probes.proxylogs.tally import Key, KeyInfo, http_classes, long_poll_classes, text
from diagnose.probes.proxylogs.w3c import Dialect

PRODUCT = "exchange-httpproxy"


def classify(key: Key) -> KeyInfo:
    scope, status, backend, error, _, _ = key
    st, be, err = text(status), text(backend), text(error)
    code = decode(err) if err else None
    classes = http_classes(st)
    group = code.group if code is not None else ""
    if group:
        classes.append(group)
    classes += long_poll_classes(key, st[:1] == "5" or bool(group) or be[:1] == "5", st)
    label = f"{st} (back end {be})" if be and be != st else st
    listed = (code.label() if code.value is not None else err) if code is not None and code.value != 0 else ""
    where = text(scope)
    return KeyInfo(f"protocol:{where}" if where else "", label, listed, tuple(classes))


DIALECT = Dialect(
    PRODUCT,
    b",",
    {
        "scope": ("protocol",),
        "status": ("httpstatus",),
        "sub": ("backendstatus",),
        "code": ("errorcode",),
        "method": ("method",),
        "stem": ("urlstem",),
        "query": ("urlquery",),
        "action": ("protocolaction",),
        "ms": ("totalrequesttime",),
        "date": ("datetime",),
    },
    classify,
)
