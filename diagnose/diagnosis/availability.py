"""Which evidence was gathered, and what each rule's outcome is on it.

Missing evidence is not negative evidence. A kind of fact is *available* when facts of it exist or
a probe that delivers it ran (complete or partial). For each rule:

* fired   - the engine matched it, and every kind it negates was available;
* unknown - it did not fire and needs a kind that was not available, or it fired only because a
            negated kind was not available ("no stopped service" proves nothing if services were
            never read). Answers are available per question.
* silent  - it did not fire although its evidence was available."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from diagnose.diagnosis.model import RuleOutcome
from diagnose.engine import usable_attrs
from diagnose.facts import EvidenceBundle, Fact
from diagnose.rulebook.loader import disjuncts
from diagnose.rulebook.model import Binding, Ref, Rule


def answer_question(binding: Binding) -> str | None:
    for test in binding.tests:
        if test.field == "subject" and test.op == "eq" and isinstance(test.value, str):
            return test.value
    return None


class Availability:
    """Which evidence was gathered: kinds, and answers per question."""

    def __init__(self, kinds: set[str] | None, answered: set[str] | None, unavailable: Sequence[str] = ()) -> None:
        """`None` means everything (used by rule tests); `unavailable` then takes kinds or `answer:QID` away."""
        self.all_kinds = kinds is None
        self.kinds = set() if kinds is None else set(kinds)
        self.all_answers = answered is None and "answer" not in unavailable
        self.answered = set(answered or ())
        self.unavailable = set(unavailable)

    @classmethod
    def of(cls, bundle: EvidenceBundle, facts: Sequence[Fact]) -> Availability:
        return cls(bundle.available_kinds() | {f.kind for f in facts}, {f.subject for f in facts if f.kind == "answer"})

    def missing(self, binding: Binding) -> str | None:
        if binding.kind == "answer":
            question = answer_question(binding)
            label = "answer" if question is None else f"answer:{question}"
            if label in self.unavailable or "answer" in self.unavailable:
                return label
            if self.all_answers or (question is None and self.answered) or question in self.answered:
                return None
            return label
        if binding.kind in self.unavailable:
            return binding.kind
        return None if self.all_kinds or binding.kind in self.kinds else binding.kind


class FactIndex:
    """Facts by kind, as the engines see them, to ask "could this binding match anything?"."""

    def __init__(self, facts: Sequence[Fact]) -> None:
        from diagnose.kinds import fact_kinds

        kinds = fact_kinds()
        ignored: list[str] = []
        self.by_kind: dict[str, list[dict[str, object]]] = defaultdict(list)
        for fact in facts:
            fields = usable_attrs(fact, kinds, ignored)
            fields["subject"] = fact.subject
            self.by_kind[fact.kind].append(fields)

    def could_match(self, binding: Binding) -> bool:
        """Some fact passes every test of `binding` that does not join to another binding."""
        return any(not self._failing(binding, fields) for fields in self.by_kind.get(binding.kind, ()))

    @staticmethod
    def _failing(binding: Binding, fields: Mapping[str, object]) -> list[str]:
        from diagnose.engine.reference import MISSING, holds

        out = []
        for test in binding.tests:
            if isinstance(test.value, Ref):
                continue
            value = fields.get(test.field, MISSING)
            if not holds(test, value, test.value):
                shown = "absent" if value is MISSING else repr(list(value) if isinstance(value, tuple) else value)
                out.append(f"{test.describe()} (it is {shown})")
        return out

    def why_not(self, rule: Rule, availability: Availability) -> str:
        """One sentence on why a silent rule did not fire: the first binding on gathered evidence that
        no fact satisfies, with the nearest fact's failing tests, or the fact that blocked a `not`."""
        reasons = []
        for positives, negatives in disjuncts(rule.when):
            gathered = [b for b in positives if not availability.missing(b)]
            for binding in gathered:
                candidates = self.by_kind.get(binding.kind, ())
                if not candidates:
                    reasons.append(f"no {binding.kind} fact")
                    break
                failing = min((self._failing(binding, f) for f in candidates), key=len)
                if failing:
                    nearest = next(f for f in candidates if self._failing(binding, f) == failing)
                    reasons.append(
                        f"{binding.name}: no {binding.kind} with {'; '.join(failing)} "
                        f"on the nearest, {nearest['subject']}"
                    )
                    break
            else:
                blocked = [b for b in negatives if self.could_match(b)]
                if blocked:
                    b = blocked[0]
                    subject = next(f["subject"] for f in self.by_kind[b.kind] if not self._failing(b, f))
                    reasons.append(f"blocked by {b.kind} {subject} (not: {b.name})")
                else:
                    reasons.append("the matching facts do not join")
        return "did not hold: " + " | ".join(dict.fromkeys(reasons)) if reasons else ""


def evaluate(rule: Rule, fired: bool, availability: Availability, index: FactIndex) -> RuleOutcome:
    negated = rule.negated_names()
    if fired:
        missing_negated = sorted(
            {m for b in rule.when.bindings() if b.name in negated and (m := availability.missing(b))}
        )
        if missing_negated:
            return RuleOutcome(rule, "unknown", tuple(missing_negated))
        return RuleOutcome(rule, "fired")
    # Not fired: undecided if some alternative lacks evidence while the evidence it does have could
    # match; an alternative whose gathered evidence already fails cannot be rescued by more evidence.
    missing: set[str] = set()
    for positives, _ in disjuncts(rule.when):
        gaps = [m for b in positives if (m := availability.missing(b))]
        if gaps and all(index.could_match(b) for b in positives if not availability.missing(b)):
            missing.update(gaps)
    if missing:
        return RuleOutcome(rule, "unknown", tuple(sorted(missing)))
    return RuleOutcome(rule, "silent", why_not=index.why_not(rule, availability))
