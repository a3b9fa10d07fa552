"""The reference evaluator: the rule language in plain Python, an engine of its own.

It runs wherever Python runs (durable_rules needs a C compiler, and does not import on Python 3.13+
without a patch), in this process, and gives the same firings as durable_rules: the differential
tests in tests/engine/ hold the two to it. `holds` is the rule language's meaning of one test; the
engine around it only decides which facts to try:

* facts are indexed by kind, and, per run, by the value of a field when a test asks for equality
  (`eq` or `in` against a literal): a binding starts from the facts with that value;
* a join on equality (`host: "$a.host"`) is a hash join: the facts of the later binding are grouped
  by the joined field once per run, and each fact of `a` looks its value up;
* a negated binding without joins is decided once per run; with joins, by the same lookups;
* what a binding's literal tests let through (its alpha memory) is computed once per run, shared by
  every binding with the same kind and literal tests.

Values are compared as the rule language says (like types only: ints and floats numerically, bools
only with bools), so the index keys carry the type class: `1`, `1.0` and `True` are not one key.
"""

from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Mapping as TypingMapping
from typing import Tuple, cast

from diagnose.engine import EngineResult, Firing, usable_attrs
from diagnose.facts import Fact
from diagnose.kinds import FactKinds, fact_kinds
from diagnose.rulebook.loader import disjuncts
from diagnose.rulebook.model import Binding, Ref, Rulebook, Test
from diagnose.rulebook.operators import MISSING, OPERATORS, ORDERED
from diagnose.rulebook.operators import holds as holds_op

Fields = TypingMapping[str, object]
Entry = Tuple[int, Fields]  # (index of the fact in the caller's list, its usable fields)


def holds(test: Test, value: object, operand: object) -> bool:
    """Does `value` (the fact's field, or MISSING) pass `test` with `operand` (literal or resolved join)?"""
    return holds_op(test.op, value, operand)


_KEY_CLASS = {bool: "bool", int: "number", float: "number", str: "str"}


def index_key(value: object) -> tuple[str, object] | None:
    """The hash key under which `eq` finds `value`: equal keys are exactly the values `eq` holds for
    (None for a list or a missing value, which `eq` never holds for)."""
    cls = _KEY_CLASS.get(type(value))
    return None if cls is None else (cls, value)


# ----------------------------------------------------------------------------------- compiling

_RANGE = ORDERED


def _predicate(test: Test) -> Callable[[object], bool]:
    """`test` against its literal as a function of the field's value (MISSING when absent): the common
    cases without the general dispatch of `holds`."""
    op, literal = test.op, test.value
    if op in _RANGE and type(literal) in (int, float):
        compare = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}[op]
        number = cast(float, literal)  # the type() test above, which mypy does not narrow on
        return lambda v: (type(v) is int or type(v) is float) and compare(v, number)
    if op == "eq" and type(literal) is str:
        return lambda v: type(v) is str and v == literal
    if op == "ne" and type(literal) is str:
        return lambda v: type(v) is str and v != literal
    meaning = OPERATORS[op]
    evaluate = meaning.evaluate
    if meaning.missing:
        return lambda v: evaluate(v, literal)
    return lambda v: v is not MISSING and evaluate(v, literal)


@dataclass(frozen=True)
class _Node:
    """One binding, ready to match: its literal tests (the alpha part), the equality joins to earlier
    bindings (hash-joined: (field here, earlier binding, its field)), and the other joins."""

    binding: Binding
    alpha: tuple[Test, ...]
    checks: tuple[tuple[str, Callable[[object], bool]], ...]  # the alpha tests as (field, predicate)
    hashed: tuple[tuple[str, str, str], ...]
    other_joins: tuple[Test, ...]
    required: tuple[str, ...]  # fields a later binding joins to
    alpha_key: int  # the same for bindings with the same kind, literal tests and required fields
    table_key: int  # the same for bindings with the same alpha_key and hash-joined fields


def _node(binding: Binding, required: frozenset[str], keys: dict[tuple[object, ...], int]) -> _Node:
    alpha = tuple(t for t in binding.tests if not isinstance(t.value, Ref))
    joins = tuple(t for t in binding.tests if isinstance(t.value, Ref))
    hashed = tuple(
        (t.field, t.value.binding, t.value.field) for t in joins if t.op == "eq" and isinstance(t.value, Ref)
    )
    needs = tuple(sorted(required))
    alpha_key = keys.setdefault((binding.kind, alpha, needs), len(keys))
    table_key = keys.setdefault((alpha_key, tuple(f for f, _, _ in hashed)), len(keys))
    return _Node(
        binding,
        alpha,
        tuple((t.field, _predicate(t)) for t in alpha),
        hashed,
        tuple(t for t in joins if t.op != "eq"),
        needs,
        alpha_key,
        table_key,
    )


def _indexable(test: Test) -> bool:
    """Can an index give the facts that pass `test` (an equality, a list of them, a numeric range)?"""
    if test.op == "eq":
        return index_key(test.value) is not None
    if test.op == "in":
        return True
    return test.op in _RANGE and type(test.value) in (int, float)


@dataclass(frozen=True)
class _Alternative:
    rule_id: str
    positives: tuple[_Node, ...]
    negatives: tuple[_Node, ...]


class _Run:
    """The indexes of one run: facts by kind, by (kind, field, value), alpha memories, join tables."""

    def __init__(self, by_kind: Mapping[str, list[Entry]]) -> None:
        self.by_kind = by_kind
        self._by_value: dict[tuple[str, str], dict[object, list[Entry]]] = {}
        self._by_number: dict[tuple[str, str], tuple[list[float], list[Entry]]] = {}
        self._alpha: dict[int, list[Entry]] = {}
        self._tables: dict[int, dict[object, list[Entry]]] = {}
        self._absent: dict[int, bool] = {}

    def with_value(self, kind: str, field: str, literal: object) -> list[Entry]:
        """The facts of `kind` whose `field` equals `literal` (any of them, for a tuple), in fact order."""
        table = self._by_value.get((kind, field))
        if table is None:
            table = self._by_value[(kind, field)] = defaultdict(list)
            for entry in self.by_kind.get(kind, ()):
                key = index_key(entry[1].get(field, MISSING))
                if key is not None:
                    table[key].append(entry)
        if isinstance(literal, tuple):  # `in`: every listed value (each fact once, in fact order)
            found = {e[0]: e for item in literal for e in table.get(index_key(item), ())}
            return [found[i] for i in sorted(found)]
        return table.get(index_key(literal), [])

    def in_range(self, kind: str, field: str, op: str, bound: float) -> list[Entry]:
        """The facts of `kind` whose numeric `field` is `op` (lt, le, gt, ge) `bound`, in fact order."""
        ordered = self._by_number.get((kind, field))
        if ordered is None:
            pairs = sorted(
                (e[1][field], e[0], e) for e in self.by_kind.get(kind, ()) if type(e[1].get(field)) in (int, float)
            )
            ordered = self._by_number[(kind, field)] = ([cast(float, p[0]) for p in pairs], [p[2] for p in pairs])
        values, entries = ordered
        if op in ("gt", "ge"):
            chosen = entries[(bisect_right if op == "gt" else bisect_left)(values, bound) :]
        else:
            chosen = entries[: (bisect_left if op == "lt" else bisect_right)(values, bound)]
        return sorted(chosen, key=itemgetter(0))

    def _start(self, node: _Node) -> list[Entry]:
        """The smallest set of facts an index gives for one of the binding's literal tests."""
        kind, best = node.binding.kind, None
        for test in node.alpha:
            if not _indexable(test):
                continue
            if test.op in _RANGE:
                assert isinstance(test.value, (int, float))
                found = self.in_range(kind, test.field, test.op, test.value)
            else:
                found = self.with_value(kind, test.field, test.value)
            if best is None or len(found) < len(best):
                best = found
        return self.by_kind.get(kind, []) if best is None else best

    def alpha(self, node: _Node) -> list[Entry]:
        """The facts that pass the binding's literal tests and have the fields later bindings join to."""
        key = node.alpha_key
        found = self._alpha.get(key)
        if found is None:
            checks, required = node.checks, node.required
            found = [
                e
                for e in self._start(node)
                if all(f in e[1] for f in required) and all(check(e[1].get(f, MISSING)) for f, check in checks)
            ]
            self._alpha[key] = found
        return found

    def candidates(self, node: _Node, values: Mapping[str, Fields]) -> list[Entry]:
        """The facts that can fill `node` given the facts bound so far (before the non-equality joins)."""
        if not node.hashed:
            return self.alpha(node)
        table = self._tables.get(node.table_key)
        if len(node.hashed) == 1:  # the common case: one field joined
            here, binding, there = node.hashed[0]
            if table is None:
                table = self._tables[node.table_key] = defaultdict(list)
                for entry in self.alpha(node):
                    part = index_key(entry[1].get(here, MISSING))
                    if part is not None:
                        table[part].append(entry)
            wanted: object = index_key(values[binding].get(there, MISSING))
            return [] if wanted is None else table.get(wanted, [])
        if table is None:
            table = self._tables[node.table_key] = defaultdict(list)
            for entry in self.alpha(node):
                parts = tuple(index_key(entry[1].get(f, MISSING)) for f, _, _ in node.hashed)
                if None not in parts:
                    table[parts].append(entry)
        wanted = tuple(index_key(values[b].get(f, MISSING)) for _, b, f in node.hashed)
        return [] if None in wanted else table.get(wanted, [])

    def matches_joins(self, node: _Node, fields: Fields, values: Mapping[str, Fields]) -> bool:
        for test in node.other_joins:
            ref = test.value
            assert isinstance(ref, Ref)
            if not holds(test, fields.get(test.field, MISSING), values[ref.binding].get(ref.field, MISSING)):
                return False
        return True

    def exists(self, node: _Node, values: Mapping[str, Fields]) -> bool:
        """Some fact matches the negated binding `node` (its joins read the facts bound in `values`)."""
        if not node.hashed and not node.other_joins:
            key = node.alpha_key
            if key not in self._absent:
                self._absent[key] = not self.alpha(node)
            return not self._absent[key]
        return any(self.matches_joins(node, e[1], values) for e in self.candidates(node, values))


class ReferenceEngine:
    name = "reference"

    def __init__(self, rulebook: Rulebook, kinds: FactKinds | None = None) -> None:
        self.kinds = kinds or fact_kinds()
        self.used = rulebook.kinds()
        self.alternatives: list[_Alternative] = []
        keys: dict[tuple[object, ...], int] = {}
        for rule in rulebook.rules:
            joined = rule.joined_fields()
            for positives, negatives in disjuncts(rule.when):
                self.alternatives.append(
                    _Alternative(
                        rule.id,
                        tuple(_node(b, joined.get(b.name, frozenset()), keys) for b in positives),
                        tuple(_node(b, frozenset(), keys) for b in negatives),
                    )
                )

    def run(self, facts: Sequence[Fact]) -> EngineResult:
        warnings: list[str] = []
        by_kind: dict[str, list[Entry]] = defaultdict(list)
        unused: set[str] = set()
        for index, fact in enumerate(facts):
            if fact.kind not in self.used:
                unused.add(fact.kind)
                continue
            fields = usable_attrs(fact, self.kinds, warnings)
            fields["subject"] = fact.subject
            fields["kind"] = fact.kind
            by_kind[fact.kind].append((index, fields))
        state = _Run(by_kind)
        firings: dict[tuple[str, tuple[tuple[str, int], ...]], Firing] = {}
        for alt in self.alternatives:
            if any(not state.alpha(n) for n in alt.positives):
                continue  # a binding nothing can fill
            if any(not (n.hashed or n.other_joins) and state.exists(n, {}) for n in alt.negatives):
                continue  # blocked whatever is bound
            for chosen, values in _assign(state, alt.positives, 0, {}, {}):
                if any(state.exists(n, values) for n in alt.negatives):
                    continue
                key = tuple(sorted(chosen.items()))
                if (alt.rule_id, key) not in firings:
                    firings[(alt.rule_id, key)] = Firing(alt.rule_id, key)
        return EngineResult(tuple(firings.values()), tuple(warnings), tuple(sorted(unused)))


def _assign(
    state: _Run, nodes: Sequence[_Node], i: int, chosen: dict[str, int], values: dict[str, Fields]
) -> Iterator[tuple[dict[str, int], dict[str, Fields]]]:
    """Every assignment of distinct facts to the positive bindings `nodes[i:]`, given `chosen`."""
    if i == len(nodes):
        yield dict(chosen), values
        return
    node = nodes[i]
    name = node.binding.name
    taken = set(chosen.values())
    for index, fields in state.candidates(node, values):
        if index in taken or not state.matches_joins(node, fields, values):
            continue
        chosen[name] = index
        values[name] = fields
        yield from _assign(state, nodes, i + 1, chosen, values)
        del chosen[name]
        del values[name]
