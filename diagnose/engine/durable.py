"""The durable_rules adapter: the only module that imports `durable`.

durable_rules 2.0.28 has defects that bite (see shared/knowledge/durable-rules-notes.md); each is
handled here, and each has a conformance test in tests/engine/:

* Negation depends on assertion order (#402), and there is no truth maintenance: every rule starts
  with a *gate* condition, and the gate fact is asserted after all evidence, so nothing is matched
  before all evidence is in.
* Type-blind comparisons (`"50" > 100` is true, `1 == "1"`): facts are checked against the declared
  fact kinds and mistyped values are dropped with a warning before they reach the engine; rules are
  type-checked at load time.
* Exponent floats (`1e-05` is a parse error 204, and silently truncates a batch): our own JSON
  writer always puts a `.` in the mantissa, and facts are asserted one at a time.
* False duplicate-fact rejections (content hashing ignores type; 32-bit id hash collisions, #376):
  every fact gets a unique `id`, and a spurious `MessageObservedException` is retried with a new id.
* The `delete_state` crash on a sid where no action completed: a sentinel rule on the gate alone
  fires in every session, so an action has always completed before `delete_state`.
* The global host and its timer threads: `durable.lang` and `Host` are never used; the C functions
  are called directly, so there is no global registry and no background thread.
* Thread safety: the C module has no locks; every call goes through one process-wide lock.
* The 1024-live-sid limit and the per-ruleset leaks: one ruleset per rulebook version, compiled
  once and cached; one sid per diagnosis, deleted when the diagnosis ends.
* Found here, not in the notes: the alpha network is walked with a fixed stack of 64 nodes
  (`MAX_STACK_SIZE` in events.c), so a fact that passes the tests of more than about 64 sibling
  conditions fails with error 303 (e.g. 80 rules `status64_count > N` and a large count). The
  rulebook is therefore split into partitions with at most PARTITION_BUDGET conditions per fact
  kind; each partition is its own ruleset and gets only the facts of the kinds it uses.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import durable_rules_engine as _c

from diagnose.engine import EngineResult, Firing, usable_attrs
from diagnose.errors import EngineError
from diagnose.facts import Fact
from diagnose.kinds import FactKinds, fact_kinds
from diagnose.rulebook.loader import disjuncts
from diagnose.rulebook.model import Binding, Ref, Rule, Rulebook, Test

GATE_KIND = "$gate"
GATE_ALIAS = "gate_"
SENTINEL = "$sentinel"
_LOCK = threading.RLock()
_names = itertools.count()
_sids = itertools.count()
_COMPILED: dict[str, list[Any]] = {}
_PATTERN_SPECIALS = set(".|?*+()[]{}%")
PARTITION_BUDGET = 40  # conditions on one fact kind per ruleset; durable's alpha stack holds 64
_RESULT_OBSERVED = 2  # 1 = not handled (no condition observes the fact): fine, it cannot matter


# ----------------------------------------------------------------------------------- JSON writing

def _number(value: int | float) -> str:
    if isinstance(value, int):
        return str(value)
    text = repr(value)
    if "e" in text or "E" in text:
        mantissa, _, exponent = text.lower().partition("e")
        if "." not in mantissa:
            mantissa += ".0"
        text = f"{mantissa}e{exponent}"
    return text


def dumps(value: Any) -> str:
    """JSON the C parser accepts: like json.dumps, but floats always carry a '.' in the mantissa."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps_flat(message: dict[str, Any]) -> str:
    """`dumps` for a flat fact message, at the speed of the C JSON encoder: only floats need our writer."""
    floats = [k for k, v in message.items() if type(v) is float]
    if not floats:
        return json.dumps(message, ensure_ascii=False)
    rest = {k: v for k, v in message.items() if type(v) is not float}
    extra = ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_number(message[k])}" for k in floats)
    return (json.dumps(rest, ensure_ascii=False)[:-1] + ("," if rest else "") + extra + "}") if rest else \
        "{" + extra + "}"


# -------------------------------------------------------------------------------------- compiling

def glob_to_pattern(glob: str) -> str:
    """A glob (`*`, `?`) as a durable `$imt` pattern (anchored; specials escaped with %)."""
    out = []
    for ch in glob:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch in _PATTERN_SPECIALS:
            out.append("%" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _operand(value: Any) -> Any:
    if isinstance(value, Ref):
        return {value.binding: value.field}
    return value


def _test(test: Test) -> list[dict[str, Any]]:
    f, op, v = test.field, test.op, test.value
    if op == "exists":
        return [{"$ex" if v else "$nex": {f: 1}}]
    if op == "eq":
        return [{f: _operand(v)}]
    if op == "ne":
        return [{"$neq": {f: _operand(v)}}]
    if op in ("lt", "le", "gt", "ge"):
        return [{{"lt": "$lt", "le": "$lte", "gt": "$gt", "ge": "$gte"}[op]: {f: _operand(v)}}]
    if op == "in":
        assert isinstance(v, tuple)
        return [{"$or": [{f: item} for item in v]}]
    if op == "matches":
        return [{"$imt": {f: glob_to_pattern(str(v))}}]
    raise EngineError(f"operator {op!r} has no durable translation")


def _condition(binding: Binding, kinds: FactKinds, joined: frozenset[str] = frozenset()) -> dict[str, Any]:
    kind = kinds[binding.kind]
    terms: list[dict[str, Any]] = [{"kind": binding.kind}]
    for test in binding.tests:
        terms.extend(_translate(test, kind.field_type(test.field) == "list"))
    terms.extend({"$ex": {f: 1}} for f in sorted(joined))
    return {"$and": terms}


def _translate(test: Test, field_is_list: bool) -> list[dict[str, Any]]:
    f, v = test.field, test.value
    if test.op == "contains" and not field_is_list:
        escaped = "".join("%" + ch if ch in _PATTERN_SPECIALS else ch for ch in str(v))
        return [{"$mt": {f: f".*{escaped}.*"}}]
    if test.op == "contains":
        return [{"$iany": {f: {"$i": v}}}]
    return _test(test)


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
            document[name] = {"all": conditions}
            names[name] = rule.id
    return document, names


# -------------------------------------------------------------------------------------- running

@dataclass(frozen=True)
class _Partition:
    handle: int
    names: dict[str, str]
    kinds: frozenset[str]


def _compile(rulebook: Rulebook, kinds: FactKinds) -> list[_Partition]:
    parts = []
    for rules in partition(rulebook.rules):
        document, names = compile_rules(rules, kinds)
        try:
            handle = _c.create_ruleset(f"diagnose{next(_names)}", dumps(document))
        except Exception as exc:  # the C module raises its own error type
            raise EngineError(f"durable_rules rejected the compiled rulebook: {exc}") from None
        parts.append(_Partition(handle, names, frozenset(k for r in rules for k in r.kinds())))
    return parts


class DurableEngine:
    name = "durable"

    def __init__(self, rulebook: Rulebook, kinds: FactKinds | None = None) -> None:
        self.kinds = kinds or fact_kinds()
        self.used = rulebook.kinds()
        key = rulebook.version or str(id(rulebook))
        with _LOCK:
            parts = _COMPILED.get(key)
            if parts is None:
                parts = _compile(rulebook, self.kinds)
                if rulebook.version:  # cached per rulebook version: durable never frees a ruleset
                    _COMPILED[key] = parts
            self.partitions = parts

    def run(self, facts: Sequence[Fact]) -> EngineResult:
        warnings: list[str] = []
        unused: set[str] = set()
        messages: list[tuple[int, dict[str, Any]]] = []
        for index, fact in enumerate(facts):
            if fact.kind not in self.used:
                unused.add(fact.kind)  # durable raises MessageNotHandled for kinds no rule observes
                continue
            message: dict[str, Any] = usable_attrs(fact, self.kinds, warnings)
            message["kind"] = fact.kind
            message["subject"] = fact.subject
            messages.append((index, message))
        firings: list[Firing] = []
        with _LOCK:
            for part in self.partitions:
                sid = f"d{next(_sids)}"
                mine = messages if len(self.partitions) == 1 else [(i, m) for i, m in messages
                                                                   if m["kind"] in part.kinds]
                found, error = self._session(part, sid, mine)
                # Safe only because the sentinel's action has completed in this sid (see module doc).
                _c.delete_state(part.handle, sid)
                if error:
                    raise EngineError(error)
                firings.extend(found)
        return EngineResult(tuple(firings), tuple(warnings), tuple(sorted(unused)))

    def _assert(self, part: _Partition, sid: str, message: dict[str, Any], fact_id: str) -> int:
        """Assert one fact; returns the state handle. A fact no condition observes is simply not stored."""
        for attempt in range(8):
            message["sid"] = sid
            message["id"] = fact_id if attempt == 0 else f"{fact_id}~{attempt}"
            result = _c.assert_fact(part.handle, dumps_flat(message))
            code = result[0] if isinstance(result, tuple) else 0
            if code == _RESULT_OBSERVED:  # a 32-bit id-hash collision (#376): try another id
                continue
            return int(result[1]) if isinstance(result, tuple) else int(result)
        raise EngineError(f"durable_rules kept rejecting fact {fact_id} as a duplicate")

    def _session(self, part: _Partition, sid: str,
                 messages: list[tuple[int, dict[str, Any]]]) -> tuple[list[Firing], str | None]:
        """Assert the evidence, then the gate, and collect the firings. Always reaches the gate, so the
        sentinel completes and the sid can be deleted, even when a fact was rejected."""
        error: str | None = None
        for index, message in messages:
            try:
                self._assert(part, sid, message, f"f{index}")
            except Exception as exc:
                error = f"durable_rules rejected fact #{index} ({message.get('kind')}): {exc}"
                break
        state = self._assert(part, sid, {"kind": GATE_KIND}, "gate")
        firings: dict[tuple[str, tuple[tuple[str, int], ...]], Firing] = {}
        sentinel_fired = False
        result = _c.start_action_for_state(part.handle, state)
        raw = result[1] if result else None
        while raw:
            for name, bound in json.loads(raw).items():
                if name == SENTINEL:
                    sentinel_fired = True
                    continue
                rule_id = part.names[name]
                key = tuple(sorted((alias, _index(fact["id"])) for alias, fact in bound.items() if alias != GATE_ALIAS))
                firings.setdefault((rule_id, key), Firing(rule_id, key))
            raw = _c.complete_and_start_action(part.handle, state)
        if not sentinel_fired:
            raise EngineError("durable_rules session ended without its sentinel firing")
        return list(firings.values()), error


def _index(fact_id: str) -> int:
    return int(fact_id[1:].partition("~")[0])
