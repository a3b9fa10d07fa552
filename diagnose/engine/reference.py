"""The reference evaluator: the rule language in plain Python, written for clarity, not speed.

Every inline rule test runs through this engine and through durable_rules; the two must agree.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import lru_cache

from diagnose.engine import EngineResult, Firing, usable_attrs
from diagnose.facts import Fact
from diagnose.kinds import FactKinds, fact_kinds, type_of
from diagnose.rulebook.loader import disjuncts
from diagnose.rulebook.model import Binding, Ref, Rulebook, Test

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
MISSING = object()


def _same_type(a: object, b: object) -> bool:
    ta, tb = type_of(a), type_of(b)
    return ta == tb or {ta, tb} <= {"int", "float"}


@lru_cache(maxsize=None)
def glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    for ch in pattern.translate(_ASCII_LOWER):
        out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def holds(test: Test, value: object, operand: object) -> bool:
    """Does `value` (the fact's field, or MISSING) pass `test` with `operand` (literal or resolved join)?"""
    if test.op == "exists":
        return (value is not MISSING) == operand
    if value is MISSING or operand is MISSING:
        return False
    op = test.op
    if op == "contains":
        if isinstance(value, tuple):
            return any(_same_type(item, operand) and item == operand for item in value)
        return isinstance(value, str) and isinstance(operand, str) and operand in value
    if op == "matches":
        return isinstance(value, str) and glob_regex(str(operand)).fullmatch(value.translate(_ASCII_LOWER)) is not None
    if op == "in":
        assert isinstance(operand, tuple)
        return any(_same_type(value, item) and value == item for item in operand)
    if isinstance(value, tuple) or isinstance(operand, tuple) or not _same_type(value, operand):
        return False
    if op == "eq":
        return value == operand
    if op == "ne":
        return value != operand
    if isinstance(value, (bool, str)):
        return False
    assert isinstance(value, (int, float)) and isinstance(operand, (int, float))
    return {"lt": value < operand, "le": value <= operand, "gt": value > operand, "ge": value >= operand}[op]


class ReferenceEngine:
    name = "reference"

    def __init__(self, rulebook: Rulebook, kinds: FactKinds | None = None) -> None:
        self.kinds = kinds or fact_kinds()
        self.rules = [(rule.id, disjuncts(rule.when), rule.joined_fields()) for rule in rulebook.rules]
        self.used = rulebook.kinds()

    def run(self, facts: Sequence[Fact]) -> EngineResult:
        warnings: list[str] = []
        by_kind: dict[str, list[tuple[int, Mapping[str, object]]]] = defaultdict(list)
        unused: set[str] = set()
        for index, fact in enumerate(facts):
            if fact.kind not in self.used:
                unused.add(fact.kind)
                continue
            fields = usable_attrs(fact, self.kinds, warnings)
            fields["subject"] = fact.subject
            fields["kind"] = fact.kind
            by_kind[fact.kind].append((index, fields))
        firings: dict[tuple[str, tuple[tuple[str, int], ...]], Firing] = {}
        for rule_id, alternatives, joined in self.rules:
            for positives, negatives in alternatives:
                for assignment in self._assign(positives, 0, {}, {}, by_kind, joined):
                    if any(self._exists(n, assignment[1], by_kind) for n in negatives):
                        continue
                    key = tuple(sorted(assignment[0].items()))
                    firings.setdefault((rule_id, key), Firing(rule_id, key))
        return EngineResult(tuple(firings.values()), tuple(warnings), tuple(sorted(unused)))

    def _assign(self, positives: list[Binding], i: int, chosen: dict[str, int],
                values: dict[str, Mapping[str, object]],
                by_kind: Mapping[str, list[tuple[int, Mapping[str, object]]]],
                joined: Mapping[str, frozenset[str]]):
        if i == len(positives):
            yield dict(chosen), dict(values)
            return
        binding = positives[i]
        for index, fields in by_kind.get(binding.kind, ()):
            if index in chosen.values():
                continue
            if any(f not in fields for f in joined.get(binding.name, ())):
                continue
            if self._matches(binding, fields, values):
                chosen[binding.name] = index
                values[binding.name] = fields
                yield from self._assign(positives, i + 1, chosen, values, by_kind, joined)
                del chosen[binding.name]
                del values[binding.name]

    def _exists(self, binding: Binding, values: Mapping[str, Mapping[str, object]],
                by_kind: Mapping[str, list[tuple[int, Mapping[str, object]]]]) -> bool:
        return any(self._matches(binding, fields, values) for _, fields in by_kind.get(binding.kind, ()))

    @staticmethod
    def _matches(binding: Binding, fields: Mapping[str, object], values: Mapping[str, Mapping[str, object]]) -> bool:
        for test in binding.tests:
            operand = test.value
            if isinstance(operand, Ref):
                operand = values[operand.binding].get(operand.field, MISSING)
            if not holds(test, fields.get(test.field, MISSING), operand):
                return False
        return True
