"""nginx access logs written with a custom `log_format`, read with that format.

The format is given (spec key `nginx_log_format`, `diagnose probe proxylogs --nginx-log-format`) as
nginx.conf (or any file holding `log_format` statements), as one statement, or as the bare format:

    log_format edge '$time_iso8601 $status $request_time "$request" $upstream_addr $upstream_status';

Each statement becomes one line shape: the literal text must match as written, each variable matches
what nginx can write for it (a quoted variable any text without a quote, since nginx writes `"` as
`\\x22`). The variables the reader needs are taken by name: `$time_local` or `$time_iso8601` (the
record's time), `$request` (or `$request_method` and `$request_uri`), `$status`, `$request_time`,
`$upstream_response_time`, `$upstream_addr`, `$upstream_status`; the rest are matched and ignored. A
format without `$status` is refused. Logs in `combined` and its common variants (`main`, timing and
upstream variables after the user agent) are recognised without any format given (nginx.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from diagnose.bounds import read_small
from diagnose.errors import InputError
from diagnose.probes.proxylogs import nginx
from diagnose.probes.proxylogs.records import Groups, Shape
from diagnose.probes.proxylogs.tally import Key, clf_time

MAX_FORMATS = 64  # log_format statements taken from one file
MAX_FORMAT = 4096  # characters of one format
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_STATEMENT = re.compile(r"(?:^|[;{}\s])log_format\s", re.MULTILINE)
_TOKEN = re.compile(r"""\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|(;)|([^\s;'"]+))""", re.DOTALL)
_WANTED = (
    "time_local",
    "time_iso8601",
    "request",
    "request_method",
    "request_uri",
    "status",
    "request_time",
    "upstream_response_time",
    "upstream_addr",
    "upstream_status",
)
_SHAPES = {
    "time_local": rb"\d{1,2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2}\s[+-]\d{4}",
    "time_iso8601": rb"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[+-]\d{2}:\d{2}|Z)",
    "status": rb"\d{3}",
    "request_time": rb"\d+(?:\.\d+)?|-",
    "msec": rb"\d+(?:\.\d+)?",
}


@dataclass(frozen=True)
class LogFormat:
    """One `log_format`: its name, the format text, and where it was given (file:line, or "given")."""

    name: str
    text: str
    where: str


def _statements(conf: str, where: str) -> list[LogFormat]:
    """Every `log_format NAME [escape=...] 'part' ...;` of nginx.conf text (comments skipped)."""
    found: list[LogFormat] = []
    conf = _without_comments(conf)  # offsets kept: line numbers are those of the file
    for start in _STATEMENT.finditer(conf):
        line = conf.count("\n", 0, start.end()) + 1
        pos = start.end()
        words: list[str] = []
        while True:
            token = _TOKEN.match(conf, pos)
            if token is None or token.end() == pos:
                raise InputError("log_format without its closing ';'", f"{where}:{line}")
            pos = token.end()
            if token.group(3):
                break
            quoted = token.group(1) if token.group(1) is not None else token.group(2)
            words.append(quoted if quoted is not None else token.group(4))
        if words and words[0].startswith("escape="):
            raise InputError("log_format needs a name before escape=", f"{where}:{line}")
        parts = [w for w in words[1:] if not w.startswith("escape=")]
        if not words or not parts:
            raise InputError("log_format without a name and a format", f"{where}:{line}")
        found.append(LogFormat(words[0], "".join(parts), f"{where}:{line}"))
        if len(found) > MAX_FORMATS:
            raise InputError(f"more than {MAX_FORMATS} log_format statements", where)
    return found


def _without_comments(conf: str) -> str:
    """`conf` with each # comment (outside quotes) blanked, keeping every offset."""
    out = list(conf)
    quote = ""
    i = 0
    while i < len(conf):
        c = conf[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "#":
            end = conf.find("\n", i)
            end = len(conf) if end < 0 else end
            out[i:end] = " " * (end - i)
            i = end
        i += 1
    return "".join(out)


def formats_given(given: str | Sequence[str]) -> list[LogFormat]:
    """The formats of the spec value: each item a file (nginx.conf...), a statement, or a bare format."""
    items = [given] if isinstance(given, str) else list(given)
    found: list[LogFormat] = []
    for item in items:
        text = str(item)
        if "$" not in text and Path(text).is_file():
            raw = read_small(text, 4 << 20, "nginx configuration")
            conf = raw.decode("utf-8", "replace")
            got = _statements(conf, text)
            if not got:
                raise InputError("no log_format statement in this file", text)
            found += got
        elif _STATEMENT.search(" " + text):
            found += _statements(text, "given log_format")
        elif "$" in text:
            found.append(LogFormat("given", text, "given log_format"))
        else:
            raise InputError("neither a file nor a log_format (no $variable in it)", text[:200])
    return found


def shape_of(fmt: LogFormat) -> Shape:
    """The line shape of one format (see the module doc); InputError when it cannot serve."""
    if len(fmt.text) > MAX_FORMAT:
        raise InputError(f"log_format longer than {MAX_FORMAT} characters", fmt.where)
    pattern = b"^"
    roles: dict[str, int] = {}
    pieces = _pieces(fmt.text)
    groups = 0
    for k, (literal, name) in enumerate(pieces):
        pattern += re.escape(literal.encode("utf-8"))
        if not name:
            continue
        before = literal[-1:] if literal else (pieces[k - 1][0][-1:] if k else "")
        after = pieces[k + 1][0][:1] if k + 1 < len(pieces) else ""
        shape = _SHAPES.get(name)
        if shape is None:
            shape = rb'[^"\n]*' if before == '"' and after == '"' else rb"[^\n]*?" if after else rb"[^\n]*"
        if name in _WANTED and name not in roles:
            groups += 1
            roles[name] = groups - 1
            pattern += b"(" + shape + b")"
        else:
            pattern += b"(?:" + shape + b")"
    if "status" not in roles:
        raise InputError("log_format without $status: its records cannot be counted", fmt.where)
    when_role = "time_local" if "time_local" in roles else "time_iso8601" if "time_iso8601" in roles else ""
    if not when_role:
        pattern += b"()"  # no time logged: an empty one
        roles["(none)"] = groups
        groups += 1
    try:
        compiled = re.compile(pattern + rb"$\n?", re.MULTILINE)
    except (re.error, OverflowError, RecursionError) as exc:
        raise InputError(f"log_format cannot be read: {exc}", fmt.where) from None
    keys = _Keys(tuple(sorted(roles.items(), key=lambda nv: nv[1])))
    return Shape(
        nginx.PRODUCT,
        f"nginx-format:{fmt.name}",
        compiled,
        keys,
        nginx.classify_access,
        roles[when_role or "(none)"],
        iso_time if when_role == "time_iso8601" else clf_time,
    )


def _pieces(text: str) -> list[tuple[str, str]]:
    """(literal text, the variable after it or "") from the start of a format to its end."""
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _VARIABLE.finditer(text):
        out.append((text[pos : m.start()], m.group(1) or m.group(2)))
        pos = m.end()
    out.append((text[pos:], ""))
    return out


@dataclass(frozen=True)
class _Keys:
    """The key of a record matched by a format's shape (as nginx.access_key makes it for combined)."""

    roles: tuple[tuple[str, int], ...]

    def __call__(self, groups: Groups) -> Key:
        at = dict(self.roles)

        def value(name: str) -> bytes:
            return groups[at[name]] if name in at else b""

        request = value("request")
        if not request and "request_uri" in at:
            request = value("request_method") + b" " + value("request_uri")
        more = {
            role: value(name)
            for role, name in (
                ("rt", "request_time"),
                ("urt", "upstream_response_time"),
                ("ua", "upstream_addr"),
                ("us", "upstream_status"),
            )
            if name in at
        }
        return nginx.key_of_parts(request, value("status"), more)


def iso_time(text: str) -> str:
    """`2024-03-04T00:00:01+01:00` ($time_iso8601) -> ISO 8601 UTC; "" when it cannot be read."""
    try:
        moment = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return ""
    zone = text[19:]
    if zone not in ("", "Z"):
        if len(zone) != 6 or zone[0] not in "+-" or not (zone[1:3] + zone[4:6]).isdigit():
            return ""
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        moment = moment - offset if zone[0] == "+" else moment + offset
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def shapes_given(given: str | Sequence[str] | None) -> tuple[Shape, ...]:
    """The line shapes of the formats given ("" or None: none)."""
    if not given:
        return ()
    return tuple(shape_of(fmt) for fmt in formats_given(given))
