"""The fact kinds: the typed contract between probes (which emit facts) and rules (which read them).

Declared as data in `diagnose/factkinds/*.yaml`, one file per evidence area:

    dns.resolution:
      probe: dns
      description: One name resolved from one source.
      attributes:
        name: str
        addresses: list
        matches_internal: {type: bool, description: every address is an internal one}

Types: `str`, `int`, `float` (an int is accepted), `bool`, `list` (of strings). Every attribute is
optional on a fact; a missing attribute is unknown, never false. `kind` and `subject` are always there.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diagnose.compat import SLOTS
from diagnose.errors import InputError, RuleError
from diagnose.facts import EvidenceBundle, Fact
from diagnose.yamlio import load_yaml

TYPES = ("str", "int", "float", "bool", "list")
RESERVED = frozenset({"kind", "subject", "id", "sid"})
KINDS_DIR = Path(__file__).parent / "factkinds"


@dataclass(frozen=True, **SLOTS)
class Attribute:
    name: str
    type: str
    description: str = ""


@dataclass(frozen=True, **SLOTS)
class FactKind:
    name: str
    probe: str
    description: str
    attributes: Mapping[str, Attribute]

    def field_type(self, name: str) -> str | None:
        if name in ("kind", "subject"):
            return "str"
        attr = self.attributes.get(name)
        return attr.type if attr else None


def type_of(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (tuple, list)):
        return "list"
    return type(value).__name__


def accepts(declared: str, value: object) -> bool:
    actual = type_of(value)
    return actual == declared or (declared == "float" and actual == "int")


class FactKinds:
    def __init__(self, kinds: Mapping[str, FactKind]) -> None:
        self.kinds = dict(kinds)

    def __contains__(self, name: str) -> bool:
        return name in self.kinds

    def __getitem__(self, name: str) -> FactKind:
        return self.kinds[name]

    def by_probe(self, probe: str) -> tuple[str, ...]:
        return tuple(sorted(k.name for k in self.kinds.values() if k.probe == probe))

    def problems(self, fact: Fact) -> list[tuple[str, str]]:
        """(json sub-path, message) for each way `fact` breaks its kind's declaration."""
        kind = self.kinds.get(fact.kind)
        if kind is None:
            return [(".kind", f"unknown fact kind {fact.kind!r}")]
        out = []
        for name, value in fact.attrs.items():
            attr = kind.attributes.get(name)
            if attr is None:
                out.append((f".attrs.{name}", f"{fact.kind} has no attribute {name!r}"))
            elif not accepts(attr.type, value):
                out.append((f".attrs.{name}", f"{fact.kind}.{name} is {attr.type}, got {type_of(value)}"))
        return out

    def check(self, facts: Iterable[Fact], source: str, prefix: str = "$.facts") -> None:
        """Raise InputError naming `source` and the JSON path of the first bad fact."""
        for i, fact in enumerate(facts):
            problems = self.problems(fact)
            if problems:
                sub, message = problems[0]
                raise InputError(message, f"{source}:{prefix}[{i}]{sub}")

    def check_bundle(self, bundle: EvidenceBundle, source: str) -> None:
        self.check(bundle.facts, source)


@functools.lru_cache(maxsize=None)
def fact_kinds(directory: Path = KINDS_DIR) -> FactKinds:
    kinds: dict[str, FactKind] = {}
    for path in sorted(directory.glob("*.yaml")):
        data, lines = load_yaml(path)
        if not isinstance(data, dict):
            raise RuleError("a fact-kind file is a mapping of kind names", lines.at())
        for name, spec in data.items():
            kinds[name] = _parse_kind(name, spec, lines, kinds)
    return FactKinds(kinds)


def _parse_kind(name: str, spec: Any, lines: Any, known: Mapping[str, FactKind]) -> FactKind:
    if name in known:
        raise RuleError(f"fact kind {name!r} declared twice", lines.at(name, "<key>"))
    if not isinstance(spec, dict):
        raise RuleError(f"fact kind {name!r} must be a mapping", lines.at(name))
    for key in spec:
        if key not in ("probe", "description", "attributes"):
            raise RuleError(f"unknown key {key!r} in fact kind {name!r}", lines.at(name, key, "<key>"))
    attrs: dict[str, Attribute] = {}
    for attr_name, attr_spec in (spec.get("attributes") or {}).items():
        where = lines.at(name, "attributes", attr_name)
        if attr_name in RESERVED:
            raise RuleError(f"attribute name {attr_name!r} is reserved", where)
        if isinstance(attr_spec, str):
            attr_type, description = attr_spec, ""
        elif isinstance(attr_spec, dict) and set(attr_spec) <= {"type", "description"}:
            attr_type, description = attr_spec.get("type", ""), str(attr_spec.get("description", ""))
        else:
            raise RuleError(f"attribute {attr_name!r}: expected a type or {{type, description}}", where)
        if attr_type not in TYPES:
            raise RuleError(f"attribute {attr_name!r}: unknown type {attr_type!r} (one of {', '.join(TYPES)})", where)
        attrs[attr_name] = Attribute(attr_name, attr_type, description)
    return FactKind(name, str(spec.get("probe", "")), str(spec.get("description", "")), attrs)
