"""The rule language's operators, in one table: name, what the field and operand must be, whether a join
may use it, the durable_rules translation and the Python meaning.

The loader (diagnose/rulebook/loader.py) validates tests with it, the durable compiler
(diagnose/engine/program.py) translates with it, the reference evaluator (diagnose/engine/reference.py)
evaluates with it, and `diagnose rules operators` prints it; the differential tests hold the two
engines to the same meaning. Comparison is between like types only: ints and floats numerically,
bools only with bools.
"""

from __future__ import annotations

import json
import operator
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Dict, List, Optional, Tuple

from diagnose.kinds import accepts, type_of

MISSING = object()  # the value of a field a fact does not carry
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_PATTERN_SPECIALS = set(".|?*+()[]{}%")

Durable = Callable[[str, Any, bool], List[Dict[str, Any]]]  # (field, operand, field is a list) -> terms
Check = Callable[[str, str, Any], Tuple[Any, Optional[str]]]  # (field, field type, value) -> (value, error)


def yaml_type(value: Any) -> str:
    return {
        "str": "string",
        "int": "integer",
        "float": "number",
        "bool": "boolean",
        "list": "list",
        "dict": "mapping",
        "NoneType": "null",
    }.get(type(value).__name__, type(value).__name__)


def same_type(a: object, b: object) -> bool:
    ta, tb = type_of(a), type_of(b)
    return ta == tb or {ta, tb} <= {"int", "float"}


@lru_cache(maxsize=None)
def glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    for ch in pattern.translate(_ASCII_LOWER):
        out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def glob_to_pattern(glob: str) -> str:
    """A glob (`*`, `?`) as a durable `$imt` pattern (anchored; specials escaped with %)."""
    return "".join(
        ".*" if ch == "*" else "." if ch == "?" else "%" + ch if ch in _PATTERN_SPECIALS else ch for ch in glob
    )


def _operand(value: Any) -> Any:
    """A join's operand in durable's form: `{"binding": "field"}`; a literal as it is."""
    from diagnose.rulebook.model import Ref

    return {value.binding: value.field} if isinstance(value, Ref) else value


# ------------------------------------------------------------------------------------ the meanings


def _compare(compare: Callable[[Any, Any], bool], scalar_only: bool) -> Callable[[object, object], bool]:
    def evaluate(value: object, operand: object) -> bool:
        if isinstance(value, tuple) or isinstance(operand, tuple) or not same_type(value, operand):
            return False
        if scalar_only and isinstance(value, (bool, str)):
            return False
        return compare(value, operand)

    return evaluate


def _in(value: object, operand: object) -> bool:
    assert isinstance(operand, tuple)
    return any(same_type(value, item) and value == item for item in operand)


def _contains(value: object, operand: object) -> bool:
    if isinstance(value, tuple):
        return any(same_type(item, operand) and item == operand for item in value)
    return isinstance(value, str) and isinstance(operand, str) and operand in value


def _matches(value: object, operand: object) -> bool:
    return isinstance(value, str) and glob_regex(str(operand)).fullmatch(value.translate(_ASCII_LOWER)) is not None


# ------------------------------------------------------------------------------- the translations


def _keyed(key: str) -> Durable:
    return lambda f, v, _is_list: [{key: {f: _operand(v)}}]


def _durable_contains(f: str, v: Any, is_list: bool) -> list[dict[str, Any]]:
    if is_list:
        return [{"$iany": {f: {"$i": v}}}]
    escaped = "".join("%" + ch if ch in _PATTERN_SPECIALS else ch for ch in str(v))
    return [{"$mt": {f: f".*{escaped}.*"}}]


# ---------------------------------------------------------------------------------- the checks


def _check_scalar(field: str, ftype: str, value: Any) -> tuple[Any, str | None]:
    if ftype == "list":
        return value, f"{field} is a list: use contains"
    if not accepts(ftype, value):
        return value, f"{field} is {ftype}, but the value {value!r} is {type_of(value)}"
    return value, None


def _check_order(op: str) -> Check:
    def check(field: str, ftype: str, value: Any) -> tuple[Any, str | None]:
        if ftype not in ("int", "float"):
            return value, f"{op} needs a numeric field; {field} is {ftype}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value, f"{field} {op}: expected a number, got {yaml_type(value)}"
        return value, None

    return check


def _check_in(field: str, ftype: str, value: Any) -> tuple[Any, str | None]:
    if ftype == "list" or not isinstance(value, list) or not value:
        return value, f"in takes a non-empty list of {ftype} values"
    for item in value:
        if not accepts(ftype, item):
            return value, f"{field} is {ftype}, but {item!r} in the list is {type_of(item)}"
    return tuple(value), None


def _check_contains(field: str, ftype: str, value: Any) -> tuple[Any, str | None]:
    if ftype not in ("str", "list"):
        return value, f"contains needs a string or list field; {field} is {ftype}"
    if not isinstance(value, str) or not value:
        return value, "contains takes a non-empty string"
    return value, None


def _check_matches(field: str, ftype: str, value: Any) -> tuple[Any, str | None]:
    if ftype != "str":
        return value, f"matches needs a string field; {field} is {ftype}"
    if not isinstance(value, str) or not value:
        return value, "matches takes a non-empty glob pattern (* and ?)"
    return value, None


def _check_exists(field: str, ftype: str, value: Any) -> tuple[Any, str | None]:
    return value, None if isinstance(value, bool) else f"exists takes true or false, got {yaml_type(value)}"


# ------------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Operator:
    name: str
    symbol: str  # how `explain` and `rules show` write it
    fields: str  # the field types it applies to, in words
    operand: str  # the operand, in words
    joins: bool  # may compare with a field of an earlier binding ("$b.field")
    ordered: bool  # a numeric order (joins need numeric fields on both sides)
    check: Check  # validates (and normalises) a literal operand at load time
    durable: Durable  # the durable_rules JSON terms
    evaluate: Callable[[object, object], bool]  # the meaning, for a present value and operand
    missing: bool = False  # the meaning reads absence itself (evaluate gets MISSING)


def _order(name: str, symbol: str, durable: str, compare: Callable[[Any, Any], bool]) -> Operator:
    return Operator(
        name,
        symbol,
        "int, float",
        "a number",
        True,
        True,
        _check_order(name),
        _keyed(durable),
        _compare(compare, scalar_only=True),
    )


OPERATORS: dict[str, Operator] = {
    op.name: op
    for op in (
        Operator(
            "eq",
            "=",
            "any scalar",
            "a value of the field's type (a bare value is eq)",
            True,
            False,
            _check_scalar,
            lambda f, v, _is_list: [{f: _operand(v)}],
            _compare(operator.eq, scalar_only=False),
        ),
        Operator(
            "ne",
            "≠",
            "any scalar",
            "a value of the field's type",
            True,
            False,
            _check_scalar,
            _keyed("$neq"),
            _compare(operator.ne, scalar_only=False),
        ),
        _order("lt", "<", "$lt", operator.lt),
        _order("le", "≤", "$lte", operator.le),
        _order("gt", ">", "$gt", operator.gt),
        _order("ge", "≥", "$gte", operator.ge),
        Operator(
            "in",
            "in",
            "any scalar",
            "a non-empty list of values of the field's type",
            False,
            False,
            _check_in,
            lambda f, v, _is_list: [{"$or": [{f: item} for item in v]}],
            _in,
        ),
        Operator(
            "contains",
            "contains",
            "str, list",
            "a non-empty string (a substring, or a list element)",
            False,
            False,
            _check_contains,
            _durable_contains,
            _contains,
        ),
        Operator(
            "matches",
            "matches",
            "str",
            "a glob (* and ?), whole value, ASCII case-insensitive",
            False,
            False,
            _check_matches,
            lambda f, v, _is_list: [{"$imt": {f: glob_to_pattern(str(v))}}],
            _matches,
        ),
        Operator(
            "exists",
            "exists",
            "any",
            "true (the field is present) or false (absent)",
            False,
            False,
            _check_exists,
            lambda f, v, _is_list: [{"$ex" if v else "$nex": {f: 1}}],
            lambda value, operand: (value is not MISSING) == operand,
            missing=True,
        ),
    )
}
ORDERED = frozenset(name for name, op in OPERATORS.items() if op.ordered)


def holds(op: str, value: object, operand: object) -> bool:
    """Does `value` (the fact's field, or MISSING) pass `op` with `operand` (a literal or a resolved join)?"""
    meaning = OPERATORS[op]
    if not meaning.missing and (value is MISSING or operand is MISSING):
        return False
    return meaning.evaluate(value, operand)


def table_rows() -> list[tuple[str, str, str, str, str]]:
    """(name, field types, operand, joins, durable form of `f <op> sample`) for each operator, for
    `diagnose rules operators`."""
    samples: dict[str, Any] = {"in": ("a", "b"), "exists": True, "lt": 5, "le": 5, "gt": 5, "ge": 5}
    rows = []
    for op in OPERATORS.values():
        sample = samples.get(op.name, "a")
        forms = [op.durable("f", sample, False)] + ([op.durable("f", sample, True)] if op.name == "contains" else [])
        rows.append(
            (
                op.name,
                op.fields,
                op.operand,
                "yes" if op.joins else "no",
                " | ".join(json.dumps(form[0], ensure_ascii=False) for form in forms),
            )
        )
    return rows
