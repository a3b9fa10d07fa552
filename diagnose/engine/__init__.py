"""Inference engines for the rule language: what they share.

Two engines run the same compiled rulebook: `durable` (durable_rules 2.0.28: `diagnose.engine.durable`
compiles the rulebook and types the facts, `durable_session` is the only module that calls
durable_rules, and it runs in a worker process, `worker`, so that a crash in its C code becomes an
EngineError) and `reference` (the rule language in plain Python, indexed and hash-joined; it runs in
this process and wherever Python runs). Both take facts and return `Firing`s, and the differential
tests hold them to the same firings; all certainty arithmetic, ranking and explanation happens
afterwards in plain Python (`diagnose.ranking`).

Which engine runs (`choose_engine`, the one place that decides): `--engine auto|durable|reference`,
else the DIAGNOSE_ENGINE environment variable, else `auto`. `auto` runs durable_rules where it is
installed and imports, and the reference evaluator otherwise (no C compiler at install time, or
Python 3.13+ with the unpatched module: its ImportError is the reason given). Whether durable_rules
imports is found out where it runs, in its worker, so the tool's own process never loads it.

Semantics shared by both engines (and by the tests that hold them to it):
* A binding matches a fact of its kind whose fields pass every test.
* A field that is missing, or whose value is not of the declared type, fails every test except
  `exists: false`. (Mistyped values are dropped with a warning before matching.)
* The operators are defined once, in diagnose/rulebook/operators.py (`diagnose rules operators`):
* eq/ne/lt/le/gt/ge compare like types only: ints and floats numerically, bools only with bools.
* `in`: equal to one of the listed values. `contains`: substring of a string field, or an element of
  a list field. `matches`: glob (`*`, `?`) over the whole value, ASCII case-insensitive.
* A field that a later binding joins to (`"$a.host"`) is required: a fact without it cannot fill
  binding `a`. (durable_rules fails the whole assert with error 311 otherwise.)
* One firing per distinct combination of facts bound to the positive bindings of one alternative
  (a fact may not fill two bindings of the same combination). `not` holds when no fact matches.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from diagnose.errors import EngineUnavailable, UsageError
from diagnose.facts import Fact
from diagnose.kinds import FactKinds, accepts, type_of

ENGINES = ("auto", "durable", "reference")
ENGINE_VARIABLE = "DIAGNOSE_ENGINE"
LABELS = {"durable": "durable_rules", "reference": "the reference evaluator"}


@dataclass(frozen=True)
class Firing:
    rule_id: str
    bindings: tuple[tuple[str, int], ...]  # (binding name, index into the facts given)

    def key(self) -> tuple[str, tuple[tuple[str, int], ...]]:
        return (self.rule_id, self.bindings)


@dataclass(frozen=True)
class EngineResult:
    firings: tuple[Firing, ...]
    warnings: tuple[str, ...] = ()
    unused_kinds: tuple[str, ...] = ()
    engine: str = ""  # the engine that ran (for `auto`, the one it settled on)
    reason: str = ""  # why that engine ran, one clause


class Engine(Protocol):
    @property
    def name(self) -> str: ...

    def run(self, facts: Sequence[Fact]) -> EngineResult: ...


def usable_attrs(fact: Fact, kinds: FactKinds, warnings: list[str]) -> dict[str, object]:
    """The fact's attributes that are safe to match on: declared, of the declared type, finite."""
    kind = kinds.kinds.get(fact.kind)
    out: dict[str, object] = {}
    for name, value in fact.attrs.items():
        declared = kind.field_type(name) if kind else None
        if declared is None:
            warnings.append(f"{fact.kind} {fact.subject}: attribute {name!r} is not declared; ignored")
            continue
        if not accepts(declared, value):
            warnings.append(f"{fact.kind} {fact.subject}: {name} should be {declared}, got {type_of(value)}; ignored")
            continue
        if isinstance(value, float) and not math.isfinite(value):
            warnings.append(f"{fact.kind} {fact.subject}: {name} is not a finite number; ignored")
            continue
        out[name] = value
    return out


@dataclass(frozen=True)
class EngineChoice:
    """The engine to run and why. `requested` is what was asked for (auto, durable, reference)."""

    name: str
    requested: str
    reason: str

    @property
    def line(self) -> str:
        """The one line the CLI prints on stderr."""
        return f"diagnose: rule engine: {LABELS.get(self.name, self.name)} ({self.reason})"


def durable_missing() -> str | None:
    """Why durable_rules cannot be tried at all here (not installed), or None. Whether it imports is
    only found out in its worker (an ImportError there makes `auto` fall back)."""
    try:
        found = importlib.util.find_spec("durable_rules_engine")
    except (ImportError, ValueError) as exc:
        return f"durable_rules cannot be found: {exc}"
    return None if found is not None else "durable_rules is not installed"


def choose_engine(given: str | None = None) -> EngineChoice:
    """The engine for `--engine` (`given`), else DIAGNOSE_ENGINE, else auto."""
    if given:
        source, value = "--engine", given
    else:
        source, value = ENGINE_VARIABLE, os.environ.get(ENGINE_VARIABLE, "").strip()
    value = (value or "auto").lower()
    if value not in ENGINES:
        raise UsageError(f"{source} must be one of {', '.join(ENGINES)}, not {value!r}")
    if value != "auto":
        return EngineChoice(value, value, f"chosen with {source}" if source == "--engine" else f"{source}={value}")
    missing = durable_missing()
    if missing:
        return EngineChoice("reference", "auto", f"auto: {missing}")
    return EngineChoice("durable", "auto", "auto: durable_rules imports here")


class AutoEngine:
    """durable_rules, and the reference evaluator instead if durable_rules turns out not to import
    (found out by its worker at the first diagnosis)."""

    def __init__(self, rulebook: object, choice: EngineChoice) -> None:
        from diagnose.engine.durable import DurableEngine

        self.rulebook = rulebook
        self.choice = choice
        self.inner: Engine = DurableEngine(rulebook)  # type: ignore[arg-type]

    @property
    def name(self) -> str:
        return self.choice.name

    def run(self, facts: Sequence[Fact]) -> EngineResult:
        if self.choice.name == "durable":
            try:
                return replace(self.inner.run(facts), engine="durable", reason=self.choice.reason)
            except EngineUnavailable as exc:
                from diagnose.engine.reference import ReferenceEngine

                self.inner = ReferenceEngine(self.rulebook)  # type: ignore[arg-type]
                self.choice = EngineChoice("reference", "auto", f"auto: {exc.cause}")
        return replace(self.inner.run(facts), engine="reference", reason=self.choice.reason)


class _Chosen:
    """An engine that says why it was chosen in its results."""

    def __init__(self, inner: Engine, choice: EngineChoice) -> None:
        self.inner = inner
        self.choice = choice
        self.name = inner.name

    def run(self, facts: Sequence[Fact]) -> EngineResult:
        return replace(self.inner.run(facts), engine=self.name, reason=self.choice.reason)


def create_engine(rulebook: object, name: str | EngineChoice | None = None) -> Engine:
    """Build an engine for a loaded rulebook: "durable", "reference", "auto", an EngineChoice, or
    None (DIAGNOSE_ENGINE, else auto)."""
    from diagnose.rulebook.model import Rulebook

    assert isinstance(rulebook, Rulebook)
    choice = name if isinstance(name, EngineChoice) else choose_engine(name)
    if choice.requested == "auto" and choice.name == "durable":
        return AutoEngine(rulebook, choice)
    if choice.name == "reference":
        from diagnose.engine.reference import ReferenceEngine

        return _Chosen(ReferenceEngine(rulebook), choice)
    from diagnose.engine.durable import DurableEngine

    return _Chosen(DurableEngine(rulebook), choice)
