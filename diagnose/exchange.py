"""Exchange as data: the published protocols, the versions and the endpoints a healthy server answers.

The table lives in `checks/exchange-endpoints.yaml` (see the comment at its top). It is read and
validated here, once per file; every schema error names `file:line`. The shipped file is the default;
a directory in DIAGNOSE_CHECKS holding its own `exchange-endpoints.yaml` replaces it (the last one
wins), so a new Exchange version's endpoints need no Python change.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from diagnose.errors import RuleError
from diagnose.paths import table_path
from diagnose.yamlio import Lines, load_yaml

CATALOGUE_FILE = "exchange-endpoints.yaml"
METHODS = ("GET", "POST")
_TOP = ("protocols", "versions", "unknown_version", "endpoints", "healthcheck")
_ENDPOINT_KEYS = (
    "protocol",
    "path",
    "statuses",
    "expected",
    "method",
    "versions",
    "redirect_to",
    "form",
    "empty_ok",
    "blank_reason",
)
_HEALTHCHECK_KEYS = ("statuses", "expected", "absent_reason")


@dataclass(frozen=True)
class Expectation:
    """One Exchange endpoint and what a healthy one answers without credentials."""

    protocol: str
    path: str
    statuses: frozenset[int]
    expected: str
    method: str = "GET"
    redirect_to: str | None = None  # a 3xx must point here (path prefix, case-insensitive)
    form: bool = False  # a 200 must carry the logon form
    empty_ok: bool = True  # a 200 with an empty body is healthy
    post_form: bool = False  # the request posts the empty logon form
    blank_reason: str | None = None  # what an unexpected blank 200 means (default "a blank page")
    absent_reason: str | None = None  # what a 404 means (default: the path is not found)


@dataclass(frozen=True)
class Protocol:
    name: str
    vdir: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class Catalogue:
    path: str
    protocols: tuple[Protocol, ...]
    versions: tuple[tuple[str, bool], ...]  # (version, healthcheck.htm by default)
    unknown_version: str
    endpoints: tuple[tuple[Expectation, tuple[str, ...]], ...]  # (endpoint, versions; () = all)
    healthcheck: Expectation  # path "/{vdir}/healthcheck.htm", protocol "healthcheck"
    aliases: tuple[tuple[str, str], ...] = ()  # (another name of a version, the version)

    @property
    def protocol_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.protocols)

    @property
    def version_names(self) -> tuple[str, ...]:
        return tuple(v for v, _ in self.versions)

    @property
    def words(self) -> tuple[tuple[str, str], ...]:
        """(word an operator uses, protocol), in the protocols' order."""
        return tuple((w, p.name) for p in self.protocols for w in p.words)

    def version_of(self, name: str | None) -> str | None:
        """The version a profile's `exchange_version` names (a version or one of its aliases, any case,
        "Subscription Edition" -> "SE"), or None when the table knows no such version."""
        if name is None:
            return None
        wanted = " ".join(str(name).split()).casefold()
        for version in self.version_names:
            if version.casefold() == wanted:
                return version
        return next((version for alias, version in self.aliases if alias.casefold() == wanted), None)

    def healthcheck_default(self, version: str | None) -> bool:
        return dict(self.versions).get(self.version_of(version) or self.unknown_version, False)

    def endpoints_for(self, published: Iterable[str], version: str | None, healthcheck: bool) -> list[Expectation]:
        """The requests for the published protocols, in the table's protocol order."""
        version = self.version_of(version) or version or self.unknown_version
        wanted = set(published)
        out: list[Expectation] = []
        for protocol in self.protocols:
            if protocol.name not in wanted:
                continue
            out += [
                exp
                for exp, versions in self.endpoints
                if exp.protocol == protocol.name and (not versions or version in versions)
            ]
            if healthcheck:
                check = self.healthcheck
                out.append(
                    Expectation(
                        check.protocol,
                        f"/{protocol.vdir}/healthcheck.htm",
                        check.statuses,
                        check.expected,
                        absent_reason=check.absent_reason,
                    )
                )
        return out

    def known(self, path: str, method: str = "GET") -> Expectation | None:
        """The endpoint a path names (any version, healthcheck pages included), or None."""
        bare = path.split("?", 1)[0].lower()
        for version in self.version_names:
            for exp in self.endpoints_for(self.protocol_names, version, True):
                if exp.path.lower() == bare and exp.method == method:
                    return exp
        return None


def catalogue_path(dirs: Sequence[Path] | None = None) -> Path:
    """The catalogue in force: the last of the shipped checks directory and `dirs` (DIAGNOSE_CHECKS) with one."""
    return table_path(CATALOGUE_FILE, dirs)


def catalogue(dirs: Sequence[Path] | None = None) -> Catalogue:
    return load_catalogue(str(catalogue_path(dirs)))


@functools.lru_cache(maxsize=None)
def load_catalogue(path: str) -> Catalogue:
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise RuleError("the endpoint catalogue is a mapping (protocols, versions, endpoints...)", lines.at())
    _keys(data, _TOP, lines, (), required=_TOP)
    protocols = _protocols(data["protocols"], lines)
    names = tuple(p.name for p in protocols)
    versions, aliases = _versions(data["versions"], lines)
    known_versions = tuple(v for v, _ in versions)
    unknown = _text(data["unknown_version"], lines, ("unknown_version",))
    if unknown not in known_versions:
        raise RuleError(f"unknown_version {unknown!r} is not one of the versions", lines.at("unknown_version"))
    if not isinstance(data["endpoints"], list):
        raise RuleError("endpoints must be a list", lines.at("endpoints"))
    endpoints = tuple(
        _endpoint(raw, lines, ("endpoints", i), names, known_versions) for i, raw in enumerate(data["endpoints"])
    )
    raw = data["healthcheck"]
    _keys(raw, _HEALTHCHECK_KEYS, lines, ("healthcheck",), required=("statuses", "expected"))
    healthcheck = Expectation(
        "healthcheck",
        "",
        _statuses(raw["statuses"], lines, ("healthcheck", "statuses")),
        _text(raw["expected"], lines, ("healthcheck", "expected")),
        absent_reason=_optional(raw, "absent_reason", lines, ("healthcheck",)),
    )
    return Catalogue(str(path), protocols, versions, unknown, endpoints, healthcheck, aliases)


# ------------------------------------------------------------------------------------------ validation


def _keys(raw: Any, allowed: Sequence[str], lines: Lines, at: tuple[Any, ...], required: Sequence[str] = ()) -> None:
    if not isinstance(raw, dict):
        raise RuleError("expected a mapping", lines.at(*at))
    for key in raw:
        if key not in allowed:
            raise RuleError(f"unknown key {key!r} (allowed: {', '.join(allowed)})", lines.at(*at, key, "<key>"))
    for key in required:
        if key not in raw:
            raise RuleError(f"missing {key!r}", lines.at(*at))


def _text(value: Any, lines: Lines, at: tuple[Any, ...]) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # an unquoted version: 2010
    if not isinstance(value, str) or not value.strip():
        raise RuleError("expected a non-empty string", lines.at(*at))
    return value


def _optional(
    raw: dict[str, Any],
    key: str,
    lines: Lines,
    at: tuple[Any, ...],
    convert: Callable[[Any, Lines, tuple[Any, ...]], Any] = _text,
) -> Any:
    return convert(raw[key], lines, (*at, key)) if raw.get(key) is not None else None


def _flag(value: Any, lines: Lines, at: tuple[Any, ...]) -> bool:
    if not isinstance(value, bool):
        raise RuleError("expected true or false", lines.at(*at))
    return value


def _statuses(value: Any, lines: Lines, at: tuple[Any, ...]) -> frozenset[int]:
    if not isinstance(value, list) or not value:
        raise RuleError("statuses is a non-empty list of HTTP status codes", lines.at(*at))
    for i, status in enumerate(value):
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise RuleError(f"{status!r} is not an HTTP status code (100-599)", lines.at(*at, i))
    return frozenset(value)


def _words(value: Any, lines: Lines, at: tuple[Any, ...]) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise RuleError("expected a list of strings", lines.at(*at))
    return tuple(_text(v, lines, (*at, i)) for i, v in enumerate(value))


def _protocols(raw: Any, lines: Lines) -> tuple[Protocol, ...]:
    if not isinstance(raw, dict) or not raw:
        raise RuleError("protocols is a mapping: protocol -> {vdir, words}", lines.at("protocols"))
    out = []
    for name, entry in raw.items():
        at = ("protocols", name)
        _keys(entry, ("vdir", "words"), lines, at, required=("vdir",))
        vdir = _text(entry["vdir"], lines, (*at, "vdir"))
        if "/" in vdir.strip("/") or not vdir.strip("/"):
            raise RuleError(f"vdir {vdir!r} is one folder name", lines.at(*at, "vdir"))
        out.append(Protocol(name, vdir.strip("/"), _words(entry.get("words") or [], lines, (*at, "words"))))
    return tuple(out)


def _versions(raw: Any, lines: Lines) -> tuple[tuple[tuple[str, bool], ...], tuple[tuple[str, str], ...]]:
    """(version, healthcheck) in the table's order, and (alias, version)."""
    if not isinstance(raw, dict) or not raw:
        raise RuleError("versions is a mapping: version -> {healthcheck, aliases}", lines.at("versions"))
    out = []
    aliases: list[tuple[str, str]] = []
    seen = {str(name).casefold(): str(name) for name in raw}
    for name, entry in raw.items():
        at = ("versions", name)
        _keys(entry, ("healthcheck", "aliases"), lines, at, required=("healthcheck",))
        out.append((str(name), _flag(entry["healthcheck"], lines, (*at, "healthcheck"))))
        for i, alias in enumerate(_optional(entry, "aliases", lines, at, _words) or ()):
            alias = " ".join(alias.split())
            if alias.casefold() in seen:
                raise RuleError(
                    f"alias {alias!r} already names version {seen[alias.casefold()]!r}", lines.at(*at, "aliases", i)
                )
            seen[alias.casefold()] = str(name)
            aliases.append((alias, str(name)))
    return tuple(out), tuple(aliases)


def _endpoint(
    raw: Any, lines: Lines, at: tuple[Any, ...], protocols: Sequence[str], versions: Sequence[str]
) -> tuple[Expectation, tuple[str, ...]]:
    _keys(raw, _ENDPOINT_KEYS, lines, at, required=("protocol", "path", "statuses", "expected"))
    protocol = _text(raw["protocol"], lines, (*at, "protocol"))
    if protocol not in protocols:
        raise RuleError(f"unknown protocol {protocol!r} (one of {', '.join(protocols)})", lines.at(*at, "protocol"))
    path = _text(raw["path"], lines, (*at, "path"))
    if not path.startswith("/") or any(c.isspace() or ord(c) < 32 for c in path):
        raise RuleError(
            f"path {path!r} must start with / and hold no spaces or control characters", lines.at(*at, "path")
        )
    method = str(raw.get("method") or "GET")
    if method not in METHODS:
        raise RuleError(f"method must be one of {', '.join(METHODS)}", lines.at(*at, "method"))
    only = _optional(raw, "versions", lines, at, _words) or ()
    for i, version in enumerate(only):
        if version not in versions:
            raise RuleError(f"unknown version {version!r} (one of {', '.join(versions)})", lines.at(*at, "versions", i))
    exp = Expectation(
        protocol,
        path,
        _statuses(raw["statuses"], lines, (*at, "statuses")),
        _text(raw["expected"], lines, (*at, "expected")),
        method=method,
        redirect_to=_optional(raw, "redirect_to", lines, at),
        form=bool(_optional(raw, "form", lines, at, _flag)),
        empty_ok=_optional(raw, "empty_ok", lines, at, _flag) is not False,
        post_form=method == "POST",
        blank_reason=_optional(raw, "blank_reason", lines, at),
    )
    return exp, only
