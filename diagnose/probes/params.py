"""Typed probe parameters: one frozen dataclass per probe, declared in the probe's module or package.

A check's `params` (after its "{profile_key}" placeholders are filled) become one of these classes
before the probe runs; the check loader checks the keys and the literal values when checks load, so a
misspelt key in `checks/*.yaml` is an error naming `file:line` instead of a parameter silently ignored.

Fields are read as `spec.py` always read them: absent, None and "" mean "not given" (the field's
default). The field's annotation says how a value is read:

    tuple[str, ...]   a list of strings (a lone string is one item; `split` metadata: comma-separated)
    str | None        a string (the first item of a list)
    bool              true/false, yes/no, on/off, 1/0
    float             a positive number          int         a whole number (`port` metadata: 1-65535)
    X | None          as X, None when not given

Probes are called with an instance (`collect`, `diagnose probe`) or, in tests and old callers, a
mapping, which `of()` reads the same way.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from diagnose.errors import UsageError
from diagnose.probes.spec import spec_bool, spec_list, spec_number, spec_port, spec_text

P = TypeVar("P", bound="ProbeParams")
_PLACEHOLDER_MARK = "{"


def split_field(default: Any = ()) -> Any:
    """A list field whose string value is comma-separated items (as typed on a command line)."""
    return dataclasses.field(default=default, metadata={"split": True})


def port_field(default: int | None = None) -> Any:
    """A port number field (1-65535)."""
    return dataclasses.field(default=default, metadata={"port": True})


def _int(spec: Mapping[str, Any], key: str) -> int | None:
    value = spec.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise UsageError(f"parameter {key!r} must be a whole number, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UsageError(f"parameter {key!r} must be a whole number, got {value!r}") from None


def _read(field: dataclasses.Field[Any], spec: Mapping[str, Any]) -> Any:
    """The field's value in `spec`, or its default when not given."""
    key, kind = field.name, str(field.type).replace("typing.", "")
    optional = kind.endswith(" | None")
    base = kind[: -len(" | None")] if optional else kind
    default: Any = field.default  # of the field's type: every parameter has a default
    if base == "tuple[str, ...]":
        return tuple(spec_list(spec, key, split=bool(field.metadata.get("split")))) or default
    if base == "str":
        text = spec_text(spec, key)
        return default if text is None else text
    if base == "bool":
        value = spec_bool(spec, key, False)
        return default if spec.get(key) in (None, "") else value
    if base == "float":
        return spec_number(spec, key, default) if not optional or spec.get(key) not in (None, "") else None
    if base == "int":
        if field.metadata.get("port"):
            return spec_port(spec, key, 443) if spec.get(key) not in (None, "") else default
        number = _int(spec, key)
        return default if number is None else number
    raise TypeError(f"{field.name}: no reader for parameter type {kind!r}")  # a programming error


@dataclasses.dataclass(frozen=True)
class ProbeParams:
    """Base of the probes' parameter classes."""

    probe: ClassVar[str] = ""

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def unknown(cls, spec: Mapping[str, Any]) -> list[str]:
        known = set(cls.keys())
        return [str(k) for k in spec if k not in known]

    @classmethod
    def parse(cls: type[P], spec: Mapping[str, Any]) -> P:
        """Read a filled-in parameter mapping; an unknown key or a value of the wrong type is a UsageError."""
        unknown = cls.unknown(spec)
        if unknown:
            raise UsageError(
                f"unknown parameter {unknown[0]!r} for the {cls.probe} probe (known: {', '.join(cls.keys())})"
            )
        return cls(**{f.name: _read(f, spec) for f in dataclasses.fields(cls)})

    @classmethod
    def of(cls: type[P], spec: P | Mapping[str, Any]) -> P:
        """`spec` itself when it is already this class, else `parse(spec)`."""
        return spec if isinstance(spec, cls) else cls.parse(typing.cast("Mapping[str, Any]", spec))

    @classmethod
    def check_literal(cls, key: str, value: Any) -> None:
        """Check one value as written in a check file: a template ("{key}") is checked once filled."""
        if isinstance(value, str) and _PLACEHOLDER_MARK in value:
            return
        if isinstance(value, list) and any(isinstance(v, str) and _PLACEHOLDER_MARK in v for v in value):
            return
        field = next(f for f in dataclasses.fields(cls) if f.name == key)
        _read(field, {key: value})

    def replace(self: P, **changes: Any) -> P:
        return dataclasses.replace(self, **changes)
