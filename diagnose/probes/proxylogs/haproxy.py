"""HAProxy HTTP (`option httplog`) and TCP (`option tcplog`) logs, with or without a syslog prefix.

    [<134>][Feb  6 12:14:14 host haproxy[14389]: ]10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in
        static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {hdrs} {hdrs} "GET /index.html HTTP/1.1"
    10.0.1.2:33313 [06/Feb/2009:12:12:51.443] fnt bck/srv1 0/0/5007 212 -- 0/0/0/0/3 0/0

The HTTP timers are TR/Tw/Tc/Tr/Ta (Tq/Tw/Tc/Tr/Tt before 1.9), the TCP ones Tw/Tc/Tt; the last is
the session's whole duration in ms. The termination state (`CD`, `cD`, `sD`, `SD`, `SH`, `sH`,
`SC`, `PH`...) says who ended the session and in which phase: its first letter C/c the client
(abort/timeout), S/s the server (abort or error/timeout), P/R/I/D/K/L HAProxy itself; its second
letter the phase (R request, Q queue, C connect, H headers, D data, L last data, T tarpit).
Records are scoped by back end (`backend:NAME`).
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import itemgetter

from diagnose.probes.proxylogs.records import Groups, Shape, compiled
from diagnose.probes.proxylogs.tally import Key, KeyInfo, clf_time, http_classes, long_poll_classes, text
from diagnose.probes.proxylogs.w3c import request_long_poll, request_long_polls

PRODUCT = "haproxy"
_PREFIX = rb"^(?:[^\n]*?\s)??"  # a syslog prefix (RFC 3164 or 5424, with or without <PRI>), or none
_CLIENT = rb"(?:\[[0-9a-fA-F:.]+\]|[^\s\[\]]+):\d+\s\[(\d{1,2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2}(?:\.\d+)?)\]\s"
_ROUTE = rb"(\S+)\s([^\s/]+)/(\S+)\s"

HTTP = compiled(
    _PREFIX
    + _CLIENT
    + _ROUTE
    + rb"""(-?\d+/-?\d+/-?\d+/-?\d+/\+?-?\d+)\s   # TR/Tw/Tc/Tr/Ta
    (-?\d{1,3})\s\+?\d+\s\S+\s\S+\s              # status, bytes, cookies
    ([-A-Za-z]{4})\s                             # termination state and cookie flags
    [^\n"]*(?:"([^"\n]*)"?)?[^\n]*$\n?"""
)
TCP = compiled(
    _PREFIX
    + _CLIENT
    + _ROUTE
    + rb"""(-?\d+/-?\d+/\+?-?\d+)\s               # Tw/Tc/Tt
    \+?\d+\s([-A-Za-z]{2})\s\d+/\d+/\d+/\d+/\+?\d+\s\d+/\d+[^\n]*$\n?"""
)
MESSAGE = compiled(rb"haproxy(?:\[\d+\])?:|\b(?:Proxy|Server|backend|frontend)\s\S+\s")

_PARTS = {
    "C": "client_closed",
    "c": "client_timeout",
    "S": "server_closed",
    "s": "server_timeout",
    "P": "proxy_denied",
    "R": "proxy_denied",
    "I": "proxy_denied",
    "D": "server_closed",
    "K": "proxy_denied",
}


def _duration(timers: bytes) -> int:
    try:
        return int(timers.rsplit(b"/", 1)[1].lstrip(b"+"))
    except ValueError:
        return -1


def http_key(groups: Groups) -> Key:
    _, _, backend, _, timers, status, term, request = groups
    lp = request_long_poll(request) if request else ""
    seconds = _duration(timers) // 1000 if lp and _duration(timers) >= 0 else -1
    return (backend, status, b"", term[:2], lp, seconds)


def http_keys(found: list[Groups]) -> list[Key]:
    """`http_key` of every record of a batch: the key is worked out once per distinct (back end, status,
    termination state, request); only long polls are looked at one by one, for their duration."""
    if not found:
        return []
    backends, statuses, terms, requests = (list(c) for c in zip(*map(_HTTP_PARTS, found)))
    lps = request_long_polls(requests)
    keys: list[Key] = list(zip(backends, statuses, repeat(b""), [t[:2] for t in terms], lps, repeat(-1)))
    for i in compress(range(len(keys)), lps):
        duration = _duration(found[i][4])
        if duration >= 0:
            keys[i] = (*keys[i][:5], duration // 1000)
    return keys


_HTTP_PARTS = itemgetter(2, 5, 6, 7)


def tcp_key(groups: Groups) -> Key:
    _, _, backend, _, _, term = groups
    return (backend, b"-", b"", term, "", -1)


def classify(key: Key) -> KeyInfo:
    backend, status, _, term, _, _ = key
    st, state = text(status), text(term)
    classes: list[str] = http_classes(st)
    if state[:2] == "SC":
        classes.append("refused")
    elif state[:1] in _PARTS:
        classes.append(_PARTS[state[:1]])
    failed = st[:1] == "5" or state[:1] not in ("-", "")
    classes += long_poll_classes(key, failed, st)
    where = text(backend)
    return KeyInfo(f"backend:{where}" if where else "", st, state if state[:1] != "-" else "", tuple(classes))


SHAPES = (
    Shape(PRODUCT, "haproxy-http", HTTP, http_key, classify, 0, clf_time, MESSAGE, http_keys),
    Shape(PRODUCT, "haproxy-tcp", TCP, tcp_key, classify, 0, clf_time, MESSAGE),
)
