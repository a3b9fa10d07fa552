"""The rule language as typed data. Nothing here knows about any engine.

A rule's `when` is a tree: `All`, `Any` and `Not` groups over named `Binding`s. A binding matches
one fact of a kind whose fields satisfy all its `Test`s. A test compares a field with a literal or
with a field of an earlier binding (`Ref`, a join).
"""

from __future__ import annotations

import typing
from collections.abc import Collection
from dataclasses import dataclass, field

from diagnose.compat import SLOTS, StrEnum
from diagnose.facts import Fact, Value
from diagnose.rulebook.operators import OPERATORS as OPERATOR_TABLE

OPERATORS = tuple(OPERATOR_TABLE)  # the names, in the table's order (diagnose/rulebook/operators.py)


class Status(StrEnum):
    EXPERIMENTAL = "experimental"
    TEST = "test"
    STABLE = "stable"


class Verdict(StrEnum):
    BENIGN = "benign"
    MISCONFIGURATION = "misconfiguration"
    FAULT = "fault"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, **SLOTS)
class Ref:
    """A join: the value of `field` in the fact bound to `binding`."""

    binding: str
    field: str

    def __str__(self) -> str:
        return f"${self.binding}.{self.field}"


Operand = typing.Union[Value, typing.Tuple[Value, ...], Ref, None]


@dataclass(frozen=True, **SLOTS)
class Test:
    field: str
    op: str
    value: Operand
    line: int = 0

    def describe(self) -> str:
        if self.op == "exists":
            return f"{self.field} {'exists' if self.value else 'is absent'}"
        if self.op == "in":
            assert isinstance(self.value, tuple)
            return f"{self.field} in [{', '.join(map(str, self.value))}]"
        shown = str(self.value) if isinstance(self.value, Ref) else repr(self.value)
        return f"{self.field} {OPERATOR_TABLE[self.op].symbol} {shown}"


@dataclass(frozen=True, **SLOTS)
class Binding:
    name: str
    kind: str
    tests: tuple[Test, ...]
    line: int = 0

    def refs(self) -> tuple[Ref, ...]:
        return tuple(t.value for t in self.tests if isinstance(t.value, Ref))


@dataclass(frozen=True, **SLOTS)
class Group:
    op: str  # "all" | "any" | "not"
    items: tuple[Binding | Group, ...]
    line: int = 0

    def bindings(self) -> tuple[Binding, ...]:
        out: list[Binding] = []
        for item in self.items:
            out.extend(item.bindings() if isinstance(item, Group) else (item,))
        return tuple(out)

    def positives(self) -> tuple[Binding, ...]:
        """The bindings that bind a fact when this group holds (not those under a `not`)."""
        if self.op == "not":
            return ()
        out: list[Binding] = []
        for item in self.items:
            out.extend(item.positives() if isinstance(item, Group) else (item,))
        return tuple(out)

    def stand_in(self, name: str, bound: Collection[str]) -> Binding | None:
        """The binding that takes the place of `name` when a firing did not bind it: `name` sits in
        an `any` alternative that did not match, so the alternative that did match (the nearest
        enclosing `any` with a bound binding in another alternative) lends its binding of the same
        kind, at the same place among that kind's bindings. None if there is no such binding."""
        path = _path_to(self, name)
        if not path or any(group.op == "not" for group, _ in path):
            return None
        target = path[-1][0].items[path[-1][1]]
        assert isinstance(target, Binding)
        for depth in range(len(path) - 1, -1, -1):
            group, index = path[depth]
            if group.op != "any":
                continue
            mine = _members(group.items[index])
            place = [b.name for b in mine if b.kind == target.kind].index(name)
            for other, item in enumerate(group.items):
                members = _members(item)
                if other == index or not any(b.name in bound for b in members):
                    continue
                same = [b for b in members if b.kind == target.kind and b.name in bound]
                return same[place] if place < len(same) else (same[0] if same else None)
        return None


def _members(item: Binding | Group) -> tuple[Binding, ...]:
    return item.positives() if isinstance(item, Group) else (item,)


def _path_to(group: Group, name: str) -> list[tuple[Group, int]]:
    """The groups from `group` down to binding `name`, each with the index of the item leading there."""
    for index, item in enumerate(group.items):
        if isinstance(item, Binding):
            if item.name == name:
                return [(group, index)]
        elif below := _path_to(item, name):
            return [(group, index), *below]
    return []


@dataclass(frozen=True, **SLOTS)
class Conclusion:
    cause: str
    certainty: float
    explain: str


@dataclass(frozen=True, **SLOTS)
class Expectation:
    fires: bool
    certainty: float | None = None  # the combined certainty of the rule's cause, when given
    unknown: bool | None = None


@dataclass(frozen=True, **SLOTS)
class RuleTest:
    name: str
    facts: tuple[Fact, ...]
    expect: Expectation
    unavailable: tuple[str, ...] = ()  # fact kinds to treat as not collected
    line: int = 0


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    status: Status
    description: str
    references: tuple[str, ...]
    when: Group
    conclude: Conclusion
    tests: tuple[RuleTest, ...]
    path: str = ""
    line: int = 1

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def kinds(self) -> frozenset[str]:
        return frozenset(b.kind for b in self.when.bindings())

    def joined_fields(self) -> dict[str, frozenset[str]]:
        """For each binding, the fields of it that other bindings join to (they must exist)."""
        out: dict[str, set[str]] = {}
        for binding in self.when.bindings():
            for ref in binding.refs():
                out.setdefault(ref.binding, set()).add(ref.field)
        return {k: frozenset(v) for k, v in out.items()}

    def negated_names(self) -> frozenset[str]:
        """Names of the bindings that sit inside a `not`."""
        return frozenset(b.name for b in _negated(self.when))


def _negated(group: Group, inside: bool = False) -> list[Binding]:
    out: list[Binding] = []
    for item in group.items:
        if isinstance(item, Group):
            out.extend(_negated(item, inside or item.op == "not"))
        elif inside or group.op == "not":
            out.append(item)
    return out


@dataclass(frozen=True)
class Cause:
    id: str
    verdict: Verdict
    title: str
    description: str
    remediation: tuple[str, ...]
    references: tuple[str, ...]
    gather: tuple[str, ...] = ()  # for inconclusive causes: what evidence to gather next
    path: str = ""


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    choices: tuple[str, ...]
    help: str = ""
    path: str = ""


@dataclass(frozen=True)
class Rulebook:
    rules: tuple[Rule, ...]
    causes: dict[str, Cause]
    questions: dict[str, Question] = field(default_factory=dict)
    version: str = ""
    sources: tuple[str, ...] = ()

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def kinds(self) -> frozenset[str]:
        out: set[str] = set()
        for rule in self.rules:
            out |= rule.kinds()
        return frozenset(out)
