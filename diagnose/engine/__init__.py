"""Inference engines for the rule language: what they share.

Two engines run the same compiled rulebook: `durable` (durable_rules 2.0.28, the production
engine: `diagnose.engine.durable` compiles the rulebook and types the facts, `durable_session` is the
only module that calls durable_rules, and it runs in a worker process, `worker`, so that a crash in
its C code becomes an EngineError) and `reference` (a small pure-Python evaluator used to check the
first; it runs in this process: it is plain Python and cannot crash it). Both take facts and
return `Firing`s; all certainty arithmetic, ranking and explanation happens afterwards in plain
Python (`diagnose.ranking`).

Semantics shared by both engines (and by the tests that hold them to it):
* A binding matches a fact of its kind whose fields pass every test.
* A field that is missing, or whose value is not of the declared type, fails every test except
  `exists: false`. (Mistyped values are dropped with a warning before matching.)
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
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from diagnose.facts import Fact
from diagnose.kinds import FactKinds, accepts, type_of


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


class Engine(Protocol):
    name: str

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


def durable_missing() -> str | None:
    """Why durable_rules cannot run in this Python, None when it can. Decided without loading it (the
    tool's own process never does; the engine's worker does): not installed, or an unpatched 2.0.28 on
    Python 3.13+, whose module calls PyEval_CallObject, removed in 3.13 (scripts/build_durable.py)."""
    spec = importlib.util.find_spec("durable_rules_engine")
    if spec is None or not spec.origin:
        return "durable_rules is not installed"
    if sys.version_info >= (3, 13):
        try:
            calls_removed = b"PyEval_CallObject" in Path(spec.origin).read_bytes()
        except OSError as exc:
            return f"durable_rules cannot be read: {exc}"
        if calls_removed:
            return "this durable_rules build calls PyEval_CallObject, which Python 3.13 removed"
    return None


def create_engine(rulebook: object, name: str = "auto") -> Engine:
    """Build an engine by name ("durable" or "reference") for a loaded rulebook; "auto" is durable
    where durable_rules imports, the reference evaluator (same answers, pure Python) otherwise."""
    from diagnose.rulebook.model import Rulebook

    assert isinstance(rulebook, Rulebook)
    if name == "auto":  # (the engine branch adds --engine, and says which engine ran and why)
        name = "durable" if durable_missing() is None else "reference"
    if name == "reference":
        from diagnose.engine.reference import ReferenceEngine

        return ReferenceEngine(rulebook)
    from diagnose.engine.durable import DurableEngine

    return DurableEngine(rulebook)
