"""Load and validate the rule base: rules, the cause catalogue and the questions.

Every mistake is reported with the file and line it is on. Checked here:
unknown or missing keys, duplicate keys, YAML aliases, bad operators, wrong value types (against
the declared fact kinds), unknown fact kinds and attributes, joins to undefined bindings, an id that
differs from its file name, duplicate ids, a cause missing from the catalogue, certainty outside
[-1, 1], explain templates naming unknown fields, and rules of status `test`/`stable` without at
least one firing and one non-firing test.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from diagnose.errors import InputError, RuleError
from diagnose.facts import Fact, JsonReader, parse_fact
from diagnose.kinds import FactKinds, fact_kinds
from diagnose.rulebook.model import (
    OPERATORS,
    Binding,
    Cause,
    Conclusion,
    Expectation,
    Group,
    Question,
    Ref,
    Rule,
    Rulebook,
    RuleTest,
    Status,
    Test,
    Verdict,
)
from diagnose.rulebook.operators import OPERATORS as OPERATOR_TABLE
from diagnose.rulebook.operators import ORDERED, yaml_type
from diagnose.yamlio import Lines, load_yaml

RULE_KEYS = ("id", "title", "status", "description", "references", "when", "conclude", "tests")
RULE_REQUIRED = ("id", "title", "status", "when", "conclude")
CAUSE_KEYS = ("id", "verdict", "title", "description", "remediation", "references", "gather")
QUESTION_KEYS = ("id", "text", "choices", "help")
GROUP_KEYS = ("all", "any", "not")
SPECIAL_DIRS = ("causes", "questions")
MAX_DISJUNCTS = 32
MAX_CONDITIONS = 31  # durable allows 32 per rule; one is the gate
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class RuleErrors(RuleError):
    """Several rule errors at once (lint); str() gives one line per error."""

    def __init__(self, errors: Sequence[RuleError]) -> None:
        super().__init__(f"{len(errors)} rule error(s)")
        self.errors = list(errors)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


# ----------------------------------------------------------------------------------------- files


def rule_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.rglob("*.yaml") if not (set(p.relative_to(directory).parts[:-1]) & set(SPECIAL_DIRS))
    )


def load_rulebook(dirs: Sequence[Path], kinds: FactKinds | None = None) -> Rulebook:
    """Load rules, causes and questions from `dirs`; later directories override earlier ones by id.

    Raises RuleErrors listing every problem (first problem per file, then cross-file problems).
    """
    kinds = kinds or fact_kinds()
    errors: list[RuleError] = []
    digest = hashlib.sha256()

    def read_all(sub: str | None, parse: Any) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for directory in dirs:
            here: dict[str, Any] = {}
            base = directory / sub if sub else directory
            if not base.is_dir():
                continue
            paths = sorted(base.glob("*.yaml")) if sub else rule_files(base)
            for path in paths:
                text = path.read_bytes()
                digest.update(str(path.relative_to(directory)).encode() + b"\0" + text)
                try:
                    item = parse(path, text.decode("utf-8-sig"), kinds)
                except UnicodeDecodeError as exc:
                    errors.append(RuleError(f"not UTF-8 text (byte {exc.start})", str(path)))
                    continue
                except RuleError as exc:
                    errors.append(exc)
                    continue
                if item.id in here:
                    errors.append(RuleError(f"duplicate id {item.id!r} (also in {here[item.id].path})", f"{path}:1"))
                    continue
                here[item.id] = item
            found.update(here)  # a later directory wins over an earlier one with the same id
        return found

    causes: dict[str, Cause] = read_all("causes", parse_cause)
    questions: dict[str, Question] = read_all("questions", parse_question)
    rules: dict[str, Rule] = read_all(None, parse_rule)
    for rule in rules.values():
        if rule.conclude.cause not in causes:
            errors.append(
                RuleError(
                    f"cause {rule.conclude.cause!r} is not in the cause catalogue "
                    f"(rules/causes/{rule.conclude.cause}.yaml)",
                    _find_line(rule, "cause"),
                )
            )
    if errors:
        raise RuleErrors(errors)
    return Rulebook(
        rules=tuple(sorted(rules.values(), key=lambda r: r.id)),
        causes=causes,
        questions=questions,
        version=digest.hexdigest()[:12],
        sources=tuple(str(d) for d in dirs),
    )


def _find_line(rule: Rule, key: str) -> str:
    try:
        for number, line in enumerate(Path(rule.path).read_text(encoding="utf-8-sig").splitlines(), 1):
            if line.strip().startswith(f"{key}:"):
                return f"{rule.path}:{number}"
    except OSError:
        pass
    return rule.where


# ----------------------------------------------------------------------------------------- rules


def parse_rule(path: Path, text: str, kinds: FactKinds) -> Rule:
    data, lines = load_yaml(path, text)
    if not isinstance(data, dict):
        raise RuleError("a rule file holds one mapping", lines.at())
    _keys(data, RULE_KEYS, RULE_REQUIRED, lines, (), "rule")
    rule_id = _text(data["id"], lines, ("id",), "id")
    if not _ID.match(rule_id):
        raise RuleError(f"id {rule_id!r} must be lowercase letters, digits and dashes", lines.at("id"))
    if rule_id != path.stem:
        raise RuleError(f"id {rule_id!r} differs from the file name {path.name!r}", lines.at("id"))
    title = _text(data["title"], lines, ("title",), "title")
    try:
        status = Status(data["status"])
    except ValueError:
        raise RuleError(
            f"status must be one of {', '.join(s.value for s in Status)}, got {data['status']!r}", lines.at("status")
        ) from None
    description = _text(data.get("description", ""), lines, ("description",), "description")
    references = tuple(_text_list(data.get("references", []), lines, ("references",), "references"))
    if not isinstance(data["when"], dict) or not data["when"]:
        raise RuleError("when must be a non-empty mapping of bindings", lines.at("when"))
    when = _group("all", data["when"], lines, ("when",), kinds, set())
    _check_joins(when, lines)
    check_ref_types(when, kinds, str(path))
    conclude = _conclusion(data["conclude"], lines, when, kinds)
    tests = tuple(_tests(data.get("tests", []), lines, kinds))
    untested = not any(t.expect.fires for t in tests) or not any(not t.expect.fires for t in tests)
    if status in (Status.TEST, Status.STABLE) and untested:
        raise RuleError(
            f"a rule of status {status.value} needs at least one firing and one non-firing test",
            lines.at("tests") if "tests" in data else lines.at("status"),
        )
    return Rule(rule_id, title, status, description, references, when, conclude, tests, str(path), 1)


def _keys(
    obj: dict[str, Any], allowed: Iterable[str], required: Iterable[str], lines: Lines, at: tuple[Any, ...], what: str
) -> None:
    allowed = tuple(allowed)
    for key in obj:
        if key not in allowed:
            raise RuleError(
                f"unknown key {key!r} in {what} (allowed: {', '.join(allowed)})", lines.at(*at, key, "<key>")
            )
    for key in required:
        if key not in obj:
            raise RuleError(f"missing key {key!r} in {what}", lines.at(*at))


def _text(value: Any, lines: Lines, at: tuple[Any, ...], what: str) -> str:
    if not isinstance(value, str):
        raise RuleError(f"{what} must be a string, got {yaml_type(value)}", lines.at(*at))
    return value


def _text_list(value: Any, lines: Lines, at: tuple[Any, ...], what: str) -> list[str]:
    if not isinstance(value, list):
        raise RuleError(f"{what} must be a list of strings", lines.at(*at))
    return [_text(v, lines, (*at, i), what) for i, v in enumerate(value)]


def _join_operators() -> str:
    names = [name for name, meaning in OPERATOR_TABLE.items() if meaning.joins]
    return f"{', '.join(names[:-1])} or {names[-1]}"


def _group(op: str, body: Any, lines: Lines, at: tuple[Any, ...], kinds: FactKinds, names: set[str]) -> Group:
    items: list[Binding | Group] = []
    if isinstance(body, list):
        if op == "not":
            raise RuleError("not takes a mapping of bindings", lines.at(*at))
        for i, entry in enumerate(body):
            if not isinstance(entry, dict) or not entry:
                raise RuleError(f"each entry of {op} must be a mapping of bindings", lines.at(*at, i))
            items.append(_group("all", entry, lines, (*at, i), kinds, names))
        return Group(op, tuple(items), lines.line(*at))
    if not isinstance(body, dict) or not body:
        raise RuleError(f"{op} must be a non-empty mapping", lines.at(*at))
    for key, value in body.items():
        where = (*at, key)
        if key in GROUP_KEYS:
            if op == "not":
                raise RuleError("groups cannot be nested inside not", lines.at(*where, "<key>"))
            items.append(_group(key, value, lines, where, kinds, names))
            continue
        if not _NAME.match(key):
            raise RuleError(f"binding name {key!r} must be lowercase letters, digits and _", lines.at(*where, "<key>"))
        if key in names:
            raise RuleError(f"binding {key!r} is defined twice", lines.at(*where, "<key>"))
        names.add(key)
        items.append(_binding(key, value, lines, where, kinds))
    return Group(op, tuple(items), lines.line(*at))


def _binding(name: str, body: Any, lines: Lines, at: tuple[Any, ...], kinds: FactKinds) -> Binding:
    if not isinstance(body, dict):
        raise RuleError(f"binding {name!r} must be a mapping with a kind", lines.at(*at))
    if "kind" not in body:
        raise RuleError(f"binding {name!r} has no kind", lines.at(*at))
    kind_name = body["kind"]
    if not isinstance(kind_name, str) or kind_name not in kinds:
        raise RuleError(f"unknown fact kind {kind_name!r} in binding {name!r}", lines.at(*at, "kind"))
    kind = kinds[kind_name]
    tests: list[Test] = []
    for field, spec in body.items():
        if field == "kind":
            continue
        where = (*at, field)
        ftype = kind.field_type(field)
        if ftype is None:
            raise RuleError(f"{kind_name} has no attribute {field!r}", lines.at(*where, "<key>"))
        if isinstance(spec, dict):
            if not spec:
                raise RuleError(f"{field}: empty operator mapping", lines.at(*where))
            for op, value in spec.items():
                tests.append(_test(field, ftype, op, value, lines, (*where, op)))
        else:
            tests.append(_test(field, ftype, "eq", spec, lines, where))
    return Binding(name, kind_name, tuple(tests), lines.line(*at))


def _operand(value: Any) -> Any:
    """`"$b.f"` is a join; `"$$..."` is a literal starting with `$`."""
    if isinstance(value, str) and value.startswith("$"):
        if value.startswith("$$"):
            return value[1:]
        binding, _, field = value[1:].partition(".")
        return Ref(binding, field)
    return value


def _test(field: str, ftype: str, op: Any, raw: Any, lines: Lines, at: tuple[Any, ...]) -> Test:
    where = lines.at(*at)
    if op not in OPERATORS:
        raise RuleError(
            f"unknown operator {op!r} on {field} (operators: {', '.join(OPERATORS)})",
            lines.at(*at, "<key>") if isinstance(op, str) else where,
        )
    line = lines.line(*at)
    value = _operand(raw)
    meaning = OPERATOR_TABLE[op]
    if isinstance(value, Ref):
        if not meaning.joins or ftype == "list":
            raise RuleError(
                f"{op} on {field} takes a literal; joins compare scalar fields with {_join_operators()}", where
            )
        return Test(field, op, value, line)
    value, error = meaning.check(field, ftype, value)
    if error:
        raise RuleError(error, where)
    return Test(field, op, value, line)


def disjuncts(group: Group) -> list[tuple[list[Binding], list[Binding]]]:
    """The rule's condition in disjunctive normal form: a list of (positive bindings, negated bindings).

    `all` multiplies out, `any` adds alternatives, `not` adds negated bindings (none of them may exist).
    Binding order is kept, so joins can only look back.
    """
    if group.op == "not":
        return [([], [b for b in group.items if isinstance(b, Binding)])]
    if group.op == "any":
        out = []
        for item in group.items:
            out.extend(disjuncts(item) if isinstance(item, Group) else [([item], [])])
        return out
    result: list[tuple[list[Binding], list[Binding]]] = [([], [])]
    for item in group.items:
        options = disjuncts(item) if isinstance(item, Group) else [([item], [])]
        result = [(p + q, n + m) for p, n in result for q, m in options]
        if len(result) > MAX_DISJUNCTS:
            break
    return result


def _check_joins(when: Group, lines: Lines) -> None:
    bindings = {b.name: b for b in when.bindings()}
    dnf = disjuncts(when)
    if len(dnf) > MAX_DISJUNCTS:
        raise RuleError(f"the condition expands to more than {MAX_DISJUNCTS} alternatives", f"{lines.path}:{when.line}")
    for positives, negatives in dnf:
        if len(positives) + len(negatives) > MAX_CONDITIONS:
            raise RuleError(f"an alternative has more than {MAX_CONDITIONS} bindings", f"{lines.path}:{when.line}")
        seen: list[str] = []
        for binding in positives + negatives:
            for test in binding.tests:
                ref = test.value
                if not isinstance(ref, Ref):
                    continue
                where = f"{lines.path}:{test.line}"
                target = bindings.get(ref.binding)
                if target is None or ref.binding == binding.name:
                    raise RuleError(f"join to undefined binding {ref.binding!r}", where)
                if ref.binding not in seen or target in negatives:
                    raise RuleError(
                        f"join to {ref.binding!r}, which is not bound before {binding.name!r} "
                        "in every alternative (joins look back to positive bindings)",
                        where,
                    )
            if binding in positives:
                seen.append(binding.name)


def check_ref_types(rule_when: Group, kinds: FactKinds, path: str) -> None:
    by_name = {b.name: b for b in rule_when.bindings()}
    for binding in by_name.values():
        own = kinds[binding.kind]
        for test in binding.tests:
            if isinstance(test.value, Ref):
                target = by_name[test.value.binding]
                ttype = kinds[target.kind].field_type(test.value.field)
                mine = own.field_type(test.field)
                where = f"{path}:{test.line}"
                if ttype is None:
                    raise RuleError(f"{target.kind} has no attribute {test.value.field!r}", where)
                compatible = ttype == mine or {ttype, mine} <= {"int", "float"}
                if not compatible or (test.op in ORDERED and mine not in ("int", "float")):
                    raise RuleError(f"join compares {test.field} ({mine}) with {test.value} ({ttype})", where)


_TEMPLATE = string.Formatter()


def _conclusion(body: Any, lines: Lines, when: Group, kinds: FactKinds) -> Conclusion:
    if not isinstance(body, dict):
        raise RuleError("conclude must be a mapping with cause, certainty and explain", lines.at("conclude"))
    _keys(body, ("cause", "certainty", "explain"), ("cause", "certainty", "explain"), lines, ("conclude",), "conclude")
    cause = _text(body["cause"], lines, ("conclude", "cause"), "cause")
    cf = body["certainty"]
    if isinstance(cf, bool) or not isinstance(cf, (int, float)) or not -1.0 <= cf <= 1.0:
        raise RuleError(f"certainty must be a number in [-1, 1], got {cf!r}", lines.at("conclude", "certainty"))
    explain = _text(body["explain"], lines, ("conclude", "explain"), "explain")
    names = {b.name: b for b in when.bindings()}
    try:
        parts = [(f, spec) for _, f, spec, _ in _TEMPLATE.parse(explain) if f is not None]
    except ValueError as exc:
        raise RuleError(f"explain template: {exc}", lines.at("conclude", "explain")) from None
    fields = [f for f, _ in parts]
    for name, spec in parts:
        binding, _, attr = name.partition(".")
        if binding not in names:
            raise RuleError(f"explain refers to unknown binding {binding!r}", lines.at("conclude", "explain"))
        if attr and kinds[names[binding].kind].field_type(attr) is None:
            raise RuleError(
                f"explain refers to {name!r}, but {names[binding].kind} has no attribute {attr!r}",
                lines.at("conclude", "explain"),
            )
        if spec and not (attr and kinds[names[binding].kind].field_type(attr) == "list"):
            raise RuleError(
                f"explain: {{{name}:{spec}}} keeps the items of a list containing {spec!r}, but {name!r} is not a list",
                lines.at("conclude", "explain"),
            )
    _check_explain_fills(fields, when, lines)
    return Conclusion(cause, float(cf), explain)


def _check_explain_fills(fields: Sequence[str], when: Group, lines: Lines) -> None:
    """Every placeholder must have a fact to read in every way the rule can fire: a binding under
    `not` never binds one, and a binding in an `any` alternative that did not match needs a binding
    of the same kind in the alternative that did (Group.stand_in)."""
    negated = {b.name for b in when.bindings()} - {b.name for b in when.positives()}
    for positives, _ in disjuncts(when):
        bound = {b.name for b in positives}
        for name in fields:
            binding = name.partition(".")[0]
            if binding in negated:
                raise RuleError(
                    f"explain refers to {{{name}}}, but {binding!r} is under `not` and never binds a fact",
                    lines.at("conclude", "explain"),
                )
            if binding not in bound and when.stand_in(binding, bound) is None:
                kind = next(b.kind for b in when.bindings() if b.name == binding)
                raise RuleError(
                    f"explain refers to {{{name}}}, but when the rule fires on "
                    f"{', '.join(b.name for b in positives)}, {binding!r} is not bound and no "
                    f"{kind} binding of the matching alternative takes its place",
                    lines.at("conclude", "explain"),
                )


def _tests(body: Any, lines: Lines, kinds: FactKinds) -> Iterable[RuleTest]:
    if not isinstance(body, list):
        raise RuleError("tests must be a list", lines.at("tests"))
    for i, test in enumerate(body):
        at = ("tests", i)
        if not isinstance(test, dict):
            raise RuleError("each test is a mapping with name, facts and expect", lines.at(*at))
        _keys(test, ("name", "facts", "expect", "unavailable"), ("name", "facts", "expect"), lines, at, "test")
        name = _text(test["name"], lines, (*at, "name"), "test name")
        if not isinstance(test["facts"], list):
            raise RuleError("facts must be a list", lines.at(*at, "facts"))
        facts: list[Fact] = []
        reader = JsonReader(lines.path)
        for j, raw in enumerate(test["facts"]):
            try:
                fact = parse_fact(raw, f"$.tests[{i}].facts[{j}]", reader)
            except InputError as exc:
                raise RuleError(exc.message.replace(lines.path + ":", ""), lines.at(*at, "facts", j)) from None
            problems = kinds.problems(fact)
            if problems:
                raise RuleError(problems[0][1], lines.at(*at, "facts", j))
            facts.append(fact)
        expect = test["expect"]
        if not isinstance(expect, dict):
            raise RuleError("expect must be a mapping", lines.at(*at, "expect"))
        _keys(expect, ("fires", "certainty", "unknown"), ("fires",), lines, (*at, "expect"), "expect")
        if not isinstance(expect["fires"], bool):
            raise RuleError("expect.fires must be true or false", lines.at(*at, "expect", "fires"))
        cf = expect.get("certainty")
        if cf is not None and (isinstance(cf, bool) or not isinstance(cf, (int, float))):
            raise RuleError("expect.certainty must be a number", lines.at(*at, "expect", "certainty"))
        unknown = expect.get("unknown")
        if unknown is not None and not isinstance(unknown, bool):
            raise RuleError("expect.unknown must be true or false", lines.at(*at, "expect", "unknown"))
        unavailable = tuple(_text_list(test.get("unavailable", []), lines, (*at, "unavailable"), "unavailable"))
        for k in unavailable:
            if k not in kinds and not k.startswith("answer:"):
                raise RuleError(f"unknown fact kind {k!r}", lines.at(*at, "unavailable"))
        yield RuleTest(
            name,
            tuple(facts),
            Expectation(expect["fires"], None if cf is None else float(cf), unknown),
            unavailable,
            lines.line(*at),
        )


# ---------------------------------------------------------------------------------- causes, questions


def parse_cause(path: Path, text: str, kinds: FactKinds) -> Cause:
    data, lines = load_yaml(path, text)
    if not isinstance(data, dict):
        raise RuleError("a cause file holds one mapping", lines.at())
    _keys(data, CAUSE_KEYS, ("id", "verdict", "title", "remediation"), lines, (), "cause")
    cause_id = _text(data["id"], lines, ("id",), "id")
    if cause_id != path.stem:
        raise RuleError(f"id {cause_id!r} differs from the file name {path.name!r}", lines.at("id"))
    try:
        verdict = Verdict(data["verdict"])
    except ValueError:
        raise RuleError(f"verdict must be one of {', '.join(v.value for v in Verdict)}", lines.at("verdict")) from None
    return Cause(
        cause_id,
        verdict,
        _text(data["title"], lines, ("title",), "title"),
        _text(data.get("description", ""), lines, ("description",), "description"),
        tuple(_text_list(data["remediation"], lines, ("remediation",), "remediation")),
        tuple(_text_list(data.get("references", []), lines, ("references",), "references")),
        tuple(_text_list(data.get("gather", []), lines, ("gather",), "gather")),
        str(path),
    )


def parse_question(path: Path, text: str, kinds: FactKinds) -> Question:
    data, lines = load_yaml(path, text)
    if not isinstance(data, dict):
        raise RuleError("a question file holds one mapping", lines.at())
    _keys(data, QUESTION_KEYS, ("id", "text", "choices"), lines, (), "question")
    qid = _text(data["id"], lines, ("id",), "id")
    if qid != path.stem:
        raise RuleError(f"id {qid!r} differs from the file name {path.name!r}", lines.at("id"))
    choices = tuple(_text_list(data["choices"], lines, ("choices",), "choices"))
    if len(choices) < 2:
        raise RuleError("a question needs at least two choices", lines.at("choices"))
    return Question(
        qid,
        _text(data["text"], lines, ("text",), "text"),
        choices,
        _text(data.get("help", ""), lines, ("help",), "help"),
        str(path),
    )
