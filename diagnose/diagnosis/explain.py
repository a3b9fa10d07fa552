"""A fired rule's explanation: its `explain` template filled from the facts one firing bound."""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence

from diagnose.engine import Firing
from diagnose.facts import Fact
from diagnose.rulebook.model import Rule

_FORMATTER = string.Formatter()


def render(template: str, bound: Mapping[str, Fact]) -> str:
    """Fill `{binding.field}` (or `{binding}` for the subject) from the bound facts. A value that is
    not there reads "(field unknown)", an empty list "(none)". `{binding.list:TEXT}` keeps only the
    list's items that contain TEXT (e.g. `{cap.samples:dirty-close:}` cites the dirty closes alone)."""
    out = []
    for literal, field, spec, _ in _FORMATTER.parse(template):
        out.append(literal)
        if field is None:
            continue
        name, _, attr = field.partition(".")
        fact = bound.get(name)
        value = None if fact is None else fact.get(attr or "subject")
        if isinstance(value, tuple):
            value = ", ".join(str(v) for v in value if not spec or spec in str(v)) or "(none)"
        elif isinstance(value, float):
            value = f"{value:g}"
        out.append(f"({attr or name} unknown)" if value is None else str(value))
    return "".join(out)


def explanation(rule: Rule, firings: Sequence[Firing], facts: Sequence[Fact]) -> str:
    """The rule's explain template filled from one of its firings: the first that binds the most of
    the template's bindings itself. A binding of an `any` alternative that did not match reads from
    the alternative that did (Group.stand_in), so the sentence speaks of the facts that matched."""
    wanted = {field.partition(".")[0] for _, field, _, _ in _FORMATTER.parse(rule.conclude.explain) if field}
    best = max(firings, key=lambda f: len(wanted & {name for name, _ in f.bindings}))
    bound = {name: facts[i] for name, i in best.bindings}
    for name in wanted - bound.keys():
        stand_in = rule.when.stand_in(name, bound.keys())
        if stand_in is not None:
            bound[name] = bound[stand_in.name]
    return render(rule.conclude.explain, bound)
