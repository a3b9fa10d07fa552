"""The service catalogue (`checks/exchange-services.yaml`): which services matter and what they break."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diagnose.compat import SLOTS
from diagnose.errors import RuleError
from diagnose.paths import data_dir
from diagnose.profile import EXCHANGE_VERSIONS, PROTOCOLS
from diagnose.yamlio import load_yaml

CATALOGUE_FILE = "exchange-services.yaml"
ROLES = ("exchange", "tmg", "proxy")
BASES = ("documented", "inferred", "practitioner")
CRITICALITIES = ("critical", "common", "optional")
STARTS = ("automatic", "manual", "disabled")
SERVER_ROLES = ("client-access", "mailbox")
_FIELDS = {
    "name",
    "display_name",
    "role",
    "versions",
    "start",
    "protocols",
    "basis",
    "criticality",
    "shared",
    "required_by",
}


@dataclass(frozen=True, **SLOTS)
class CatalogueService:
    name: str
    display_name: str
    role: str
    versions: tuple[str, ...]
    start: str
    protocols: tuple[str, ...]
    basis: str
    criticality: str
    shared: bool = False
    # Exchange version -> server roles for which Test-ServiceHealth requires it (when set to Automatic)
    required_by: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def required_roles(self, exchange_version: str | None) -> tuple[str, ...]:
        """The roles that require the service in this version (any version's when it is unknown)."""
        roles = [r for v, rs in self.required_by if not exchange_version or v == exchange_version for r in rs]
        return tuple(r for r in SERVER_ROLES if r in roles)

    def applies_to(self, exchange_version: str | None) -> bool:
        """Whether this Exchange version installs the service (yes when unknown or not Exchange)."""
        if self.role != "exchange" or not exchange_version:
            return True
        return exchange_version in self.versions


@dataclass(frozen=True)
class Catalogue:
    services: tuple[CatalogueService, ...]
    source: str

    def lookup(self, name: str) -> CatalogueService | None:
        return self._index().get(name.lower())

    @functools.lru_cache(maxsize=None)  # noqa: B019 - the catalogue is immutable and loaded once per file
    def _index(self) -> dict[str, CatalogueService]:
        return {s.name.lower(): s for s in self.services}

    def names(self, roles: Iterable[str] = ROLES) -> tuple[str, ...]:
        wanted = set(roles)
        return tuple(s.name for s in self.services if s.role in wanted)


def _str_list(value: Any, where: str, what: str, allowed: Iterable[str] | None = None) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuleError(f"{what} must be a list of strings", where)
    if allowed is not None:
        allowed = tuple(allowed)
        for v in value:
            if v not in allowed:
                raise RuleError(f"{what}: unknown value {v!r} (one of {', '.join(allowed)})", where)
    return tuple(value)


def _choice(entry: dict[str, Any], key: str, allowed: tuple[str, ...], where: str) -> str:
    value = entry.get(key)
    if value not in allowed:
        raise RuleError(f"{key} must be one of {', '.join(allowed)}, got {value!r}", where)
    return str(value)


def _required_by(value: Any, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise RuleError("required_by must map an Exchange version to a list of roles", where)
    out = []
    for version, roles in value.items():
        if version not in EXCHANGE_VERSIONS:
            raise RuleError(f"required_by: unknown Exchange version {version!r}", where)
        out.append((str(version), _str_list(roles, where, f"required_by {version}", SERVER_ROLES)))
    return tuple(out)


def _flag(entry: dict[str, Any], key: str, where: str) -> bool:
    value = entry.get(key, False)
    if not isinstance(value, bool):
        raise RuleError(f"{key} must be true or false", where)
    return value


@functools.lru_cache(maxsize=None)
def load_catalogue(path: Path | None = None) -> Catalogue:
    path = path or data_dir("checks") / CATALOGUE_FILE
    data, lines = load_yaml(path)
    if not isinstance(data, dict) or set(data) != {"services"} or not isinstance(data["services"], list):
        raise RuleError("the service catalogue is a mapping with one key, services: [...]", lines.at())
    out: list[CatalogueService] = []
    seen: set[str] = set()
    for i, entry in enumerate(data["services"]):
        where = lines.at("services", i)
        if not isinstance(entry, dict):
            raise RuleError("a catalogue entry is a mapping", where)
        unknown = set(entry) - _FIELDS
        if unknown:
            key = sorted(unknown)[0]
            raise RuleError(
                f"unknown key {key!r} (expected {', '.join(sorted(_FIELDS))})",
                lines.at("services", i, key, "<key>"),
            )
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise RuleError("name must be a non-empty string", where)
        if name.lower() in seen:
            raise RuleError(f"service {name!r} listed twice", where)
        seen.add(name.lower())
        role = _choice(entry, "role", ROLES, lines.at("services", i, "role"))
        allowed_versions = EXCHANGE_VERSIONS if role == "exchange" else ("tmg", "linux")
        out.append(
            CatalogueService(
                name=name,
                display_name=str(entry.get("display_name", name)),
                role=role,
                versions=_str_list(
                    entry.get("versions"), lines.at("services", i, "versions"), "versions", allowed_versions
                ),
                start=_choice(entry, "start", STARTS, lines.at("services", i, "start")),
                protocols=_str_list(
                    entry.get("protocols"), lines.at("services", i, "protocols"), "protocols", PROTOCOLS
                ),
                basis=_choice(entry, "basis", BASES, lines.at("services", i, "basis")),
                criticality=_choice(entry, "criticality", CRITICALITIES, lines.at("services", i, "criticality")),
                shared=_flag(entry, "shared", lines.at("services", i, "shared")),
                required_by=_required_by(entry.get("required_by"), lines.at("services", i, "required_by")),
            )
        )
    return Catalogue(tuple(out), str(path))
