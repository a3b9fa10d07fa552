"""nginx access logs (`combined`, and combined followed by timing and upstream variables) and error logs.

Access, `log_format combined` and the common extensions of it:

    127.0.0.1 - - [06/Dec/2026:22:40:00 +0000] "GET / HTTP/1.1" 502 157 "-" "curl/7.88.1"
        [rt=0.012 uct="0.000" uht="-" urt="0.012" ua="127.0.0.1:9000" us="502"]
        [or, unnamed: $request_time $upstream_response_time ...]

After the user agent, `name=value` pairs are read by name: rt / request_time, urt /
upstream_response_time, ua / upstream_addr / upstream, us / upstream_status; unnamed values are
taken as $request_time then $upstream_response_time, and an ADDR:PORT as $upstream_addr. Records are
scoped by upstream address when it is logged. 499 is nginx's "client closed the request".

Error (`error_log`), one line per event:

    2026/12/06 22:40:00 [error] 123#123: *5 upstream prematurely closed connection while reading
        response header from upstream, client: 127.0.0.1, server: _, request: "GET / HTTP/1.1",
        upstream: "http://127.0.0.1:9000/", host: "127.0.0.1:8080"

The event (the message before ", client:", with its "while ..." phase) is counted by level and upstream.
"""

from __future__ import annotations

import re
from datetime import datetime

from diagnose.probes.proxylogs.records import Groups, Shape, compiled
from diagnose.probes.proxylogs.tally import Key, KeyInfo, clf_time, http_classes, long_poll_classes, text
from diagnose.probes.proxylogs.w3c import request_long_poll, request_long_polls

PRODUCT = "nginx"
ERROR_PRODUCT = "nginx-error"

ACCESS = compiled(
    rb"""^\S+\s\S+\s[^\n]*?\s\[(\d{1,2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2}\s[+-]\d{4})\]\s  # addr ident user [time]
    "([^"\n]*)"\s(\d{3})\s(?:\d+|-)                    # "request" status bytes
    (?:\s"[^"\n]*"\s"[^"\n]*")?                        # "referer" "user agent"
    ([^\n]*)$\n?"""
)
ERROR = compiled(rb"""^(\d{4}/\d{2}/\d{2}\s\d{2}:\d{2}:\d{2})\s\[(\w+)\]\s\d+\#\d+:\s(?:\*\d+\s)?([^\n]*)$\n?""")
_EXTRA = re.compile(rb'(?:(\w+)=)?("[^"]*"|\S+)')
_NAMES = {
    b"rt": "rt",
    b"request_time": "rt",
    b"urt": "urt",
    b"upstream_response_time": "urt",
    b"ua": "ua",
    b"upstream_addr": "ua",
    b"upstream": "ua",
    b"us": "us",
    b"upstream_status": "us",
}
_NUMBER = re.compile(rb"\d+(?:\.\d+)?")
_ADDRESS = re.compile(rb"(?:\[[0-9a-fA-F:]+\]|[\w.-]+):\d+|unix:\S+")
_UPSTREAM = re.compile(rb'upstream: "(?:\w+://)?([^/"]*)')
_EVENT_END = re.compile(rb", client: ")


def extras(tail: bytes) -> dict[str, bytes]:
    """The variables logged after the combined fields, by role (rt, urt, ua, us)."""
    found: dict[str, bytes] = {}
    unnamed: list[bytes] = []
    for name, value in _EXTRA.findall(tail):
        if name:
            role = _NAMES.get(name) or _NAMES.get(name.lower())  # the names are kept in lower case
            if role and role not in found:
                found[role] = value.strip(b'"')
        else:
            unnamed.append(value.strip(b'"'))
    for value in unnamed:
        if _NUMBER.fullmatch(value):
            found.setdefault("rt" if "rt" not in found else "urt", value)
        elif _ADDRESS.fullmatch(value):
            found.setdefault("ua", value)
    return found


def access_key(groups: Groups, lp: str | None = None) -> Key:
    """The key of one access record; `lp`: its request's long-poll class when already known."""
    _, request, status, tail = groups
    return key_of_parts(request, status, extras(tail) if tail.strip() else {}, lp)


def key_of_parts(request: bytes, status: bytes, more: dict[str, bytes], lp: str | None = None) -> Key:
    """The key of an access record from its request, status and variables by role (rt, urt, ua, us)."""
    if lp is None:
        lp = request_long_poll(request) if request else ""
    seconds = -1
    if lp:
        try:
            seconds = int(float(more.get("rt", b"")))
        except (ValueError, OverflowError):  # not a number, nan, inf
            seconds = -1
    upstream = more.get("ua", b"").split(b",")[-1].strip()  # several tried: the last answered
    return (
        upstream if upstream != b"-" else b"",
        status,
        more.get("us", b"").split(b",")[-1].strip(),
        b"",
        lp,
        seconds,
    )


def access_keys(found: list[Groups]) -> list[Key]:
    """`access_key` of every record of a batch (each distinct request classified once)."""
    return list(map(access_key, found, request_long_polls([groups[1] for groups in found])))


def classify_access(key: Key) -> KeyInfo:
    upstream, status, upstream_status, _, _, _ = key
    st, us = text(status), text(upstream_status)
    classes: list[str] = http_classes(st)
    if st == "499":
        classes.append("client_closed")
    classes += long_poll_classes(key, st[:1] == "5" or st == "499", st)
    label = f"{st} (upstream {us})" if us and us not in ("-", st) else st
    where = text(upstream)
    return KeyInfo(f"upstream:{where}" if where else "", label, "", tuple(classes))


# (what the event says, the class it falls in), first match wins
_EVENTS = (
    ("upstream prematurely closed", "server_closed"),
    ("upstream timed out", "server_timeout"),
    ("connection reset by peer", "connection_reset"),
    ("connection refused", "refused"),
    ("no route to host", "unreachable"),
    ("network is unreachable", "unreachable"),
    ("could not be resolved", "name_not_resolved"),
    ("ssl_do_handshake() failed", "tls_failure"),
    ("client prematurely closed", "client_closed"),
    ("client timed out", "client_timeout"),
    ("upstream sent invalid", "bad_response"),
)


def error_key(groups: Groups) -> Key:
    _, level, message = groups
    cut = _EVENT_END.search(message)
    event = message[: cut.start()] if cut else message[:200]
    upstream = _UPSTREAM.search(message)
    return (upstream.group(1) if upstream else b"", level, b"", event, "", -1)


def classify_error(key: Key) -> KeyInfo:
    upstream, level, _, event, _, _ = key
    what = text(event)
    low = what.lower()
    classes = [cls for marker, cls in _EVENTS if marker in low][:1]
    if classes == ["connection_reset"] and "upstream" in low:
        classes.append("server_reset")
    where = text(upstream)
    return KeyInfo(f"upstream:{where}" if where else "", text(level), what, tuple(classes))


def error_time(text_: str) -> str:
    try:
        return datetime.strptime(text_, "%Y/%m/%d %H:%M:%S").strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return ""


ACCESS_SHAPES = (Shape(PRODUCT, "nginx-access", ACCESS, access_key, classify_access, 0, clf_time, None, access_keys),)
ERROR_SHAPES = (Shape(ERROR_PRODUCT, "nginx-error", ERROR, error_key, classify_error, 0, error_time),)
