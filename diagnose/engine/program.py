"""A rulebook compiled for durable_rules: the JSON ruleset documents and the map back to our rule
ids, plain data that crosses a pipe to the engine worker (diagnose/engine/worker.py) and that the
adapter (diagnose/engine/durable.py) hands to it. Nothing here imports durable; why each document
looks as it does (the gate, `"dist": 0`, partitions) is told in durable.py's docstring.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from diagnose.engine.durable_session import GATE_ALIAS, GATE_KIND, SENTINEL, PartitionSpec, dumps
from diagnose.kinds import FactKinds
from diagnose.rulebook.loader import disjuncts
from diagnose.rulebook.model import Binding, Rule, Rulebook, Test
from diagnose.rulebook.operators import OPERATORS, glob_to_pattern

__all__ = ["PARTITION_BUDGET", "Program", "compile_program", "compile_rules", "glob_to_pattern", "partition"]

PARTITION_BUDGET = 40  # conditions on one fact kind per ruleset; durable's alpha stack holds 64


# -------------------------------------------------------------------------------------- compiling


def _condition(binding: Binding, kinds: FactKinds, joined: frozenset[str] = frozenset()) -> dict[str, Any]:
    kind = kinds[binding.kind]
    terms: list[dict[str, Any]] = [{"kind": binding.kind}]
    for test in binding.tests:
        terms.extend(_translate(test, kind.field_type(test.field) == "list"))
    terms.extend({"$ex": {f: 1}} for f in sorted(joined))
    return {"$and": terms}


def _translate(test: Test, field_is_list: bool) -> list[dict[str, Any]]:
    """The durable terms of one test, from the operator table."""
    return OPERATORS[test.op].durable(test.field, test.value, field_is_list)


def partition(rules: Sequence[Rule]) -> list[list[Rule]]:
    """Split rules into groups with at most PARTITION_BUDGET conditions on any one fact kind."""
    groups: list[tuple[list[Rule], dict[str, int]]] = []
    for rule in rules:
        need: dict[str, int] = {}
        for positives, negatives in disjuncts(rule.when):
            for binding in positives + negatives:
                need[binding.kind] = need.get(binding.kind, 0) + 1
        for members, load in groups:  # noqa: B007 - the loop leaves the chosen group in members/load
            if all(load.get(k, 0) + n <= PARTITION_BUDGET for k, n in need.items()):
                break
        else:
            members, load = [], {}
            groups.append((members, load))
        members.append(rule)
        for k, n in need.items():
            load[k] = load.get(k, 0) + n
    return [members for members, _ in groups] or [[]]


def compile_rules(rules: Sequence[Rule], kinds: FactKinds) -> tuple[dict[str, Any], dict[str, str]]:
    """The durable ruleset document for `rules`, and the map from durable rule names to our rule ids."""
    gate = {GATE_ALIAS: {"$and": [{"kind": GATE_KIND}]}}
    document: dict[str, Any] = {SENTINEL: {"all": [gate]}}
    names: dict[str, str] = {}
    for rule in rules:
        joined = rule.joined_fields()
        for n, (positives, negatives) in enumerate(disjuncts(rule.when)):
            conditions: list[dict[str, Any]] = [gate]
            conditions += [{b.name: _condition(b, kinds, joined.get(b.name, frozenset()))} for b in positives]
            conditions += [{f"{b.name}$not": _condition(b, kinds)} for b in negatives]
            name = f"{rule.id}#{n}"
            document[name] = {"all": conditions, "dist": 0}  # see "Negation sees every fact" above
            names[name] = rule.id
    return document, names


@dataclass(frozen=True)
class Program:
    """A rulebook compiled for durable_rules: plain data, the same in any process. `key` identifies
    it (two rulebooks that compile alike share one worker)."""

    key: str
    partitions: tuple[PartitionSpec, ...]
    rules: int


def compile_program(rulebook: Rulebook, kinds: FactKinds) -> Program:
    parts = []
    for rules in partition(rulebook.rules):
        document, names = compile_rules(rules, kinds)
        parts.append(PartitionSpec(dumps(document), names, frozenset(k for r in rules for k in r.kinds())))
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.document.encode())
        digest.update(b"\0")
    return Program(digest.hexdigest()[:16], tuple(parts), len(rulebook.rules))
