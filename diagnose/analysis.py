"""From an evidence bundle to a diagnosis: run the engine, then rank, explain and list unknowns.

Missing evidence is not negative evidence. A kind of fact is *available* when facts of it exist or
a probe that delivers it ran (complete or partial). For each rule:

* fired   - the engine matched it, and every kind it negates was available;
* unknown - it did not fire and needs a kind that was not available, or it fired only because a
            negated kind was not available ("no stopped service" proves nothing if services were
            never read). Answers are available per question.
* silent  - it did not fire although its evidence was available.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from diagnose.engine import Engine, Firing, create_engine, usable_attrs
from diagnose.facts import EvidenceBundle, Fact, make_fact
from diagnose.profile import profile_from_mapping
from diagnose.ranking import ESTABLISHED, PROBLEMS, combine_all, is_ruled_out, order
from diagnose.rulebook.loader import disjuncts
from diagnose.rulebook.model import Binding, Cause, Question, Ref, Rule, Rulebook, Verdict

MAX_MATCHES = 20  # fact combinations kept per rule for the explanation (the count is always kept)
# The kind of fact that shows the evidence a `diagnose --OPTION` in a cause's gather item asks for
# was given (a probe that delivers it ran, or facts of it are in the bundle).
GATHERED_BY = {"--log": "log.status_summary", "--capture": "capture.teardown_summary",
               "--services-export": "service.state", "--profile": "dns.resolution"}
_OPTION = re.compile(r"diagnose[^)]*?(--[a-z][a-z-]*)")


@dataclass(frozen=True)
class RuleSupport:
    rule: Rule
    certainty: float
    explain: str
    matches: tuple[tuple[tuple[str, int], ...], ...]  # per firing: (binding, fact index)
    firings: int


@dataclass(frozen=True)
class CauseFinding:
    cause: Cause
    certainty: float
    support: tuple[RuleSupport, ...]
    evidence: tuple[int, ...]  # fact indices, in first-cited order


@dataclass(frozen=True)
class RuleOutcome:
    rule: Rule
    status: str  # fired | silent | unknown
    missing: tuple[str, ...] = ()
    why_not: str = ""  # for a silent rule: the first condition that failed, and on which fact

    @property
    def reason(self) -> str:
        if self.status == "unknown":
            return "needs evidence that was not gathered: " + ", ".join(self.missing)
        if self.status == "fired":
            return "its conditions held"
        return self.why_not or "its conditions did not hold on the evidence gathered"


@dataclass(frozen=True)
class AnswerEffect:
    choice: str
    verdict: Verdict
    top: str | None
    certainty: float


@dataclass(frozen=True)
class QuestionPrompt:
    question: Question
    weight: float
    rules: tuple[str, ...]
    causes: tuple[str, ...]
    effects: tuple[AnswerEffect, ...] = ()


@dataclass(frozen=True)
class Diagnosis:
    verdict: Verdict
    causes: tuple[CauseFinding, ...]  # ranked (ranking.order), the ruled-out ones last
    outcomes: tuple[RuleOutcome, ...]
    questions: tuple[QuestionPrompt, ...]
    facts: tuple[Fact, ...]
    bundle: EvidenceBundle
    rulebook: Rulebook
    warnings: tuple[str, ...]
    unused_kinds: tuple[str, ...]
    engine: str
    firings: tuple[Firing, ...] = ()
    engine_reason: str = ""  # why that engine ran (diagnose.engine.choose_engine)

    @property
    def ranked(self) -> tuple[CauseFinding, ...]:
        """The ranked causes: the one that decided the verdict first (see diagnose.ranking.order)."""
        return tuple(c for c in self.causes if not is_ruled_out(c.certainty))

    @property
    def decided_by(self) -> CauseFinding | None:
        """The cause that decided the verdict; None when no cause was established."""
        ranked = self.ranked
        return ranked[0] if ranked and ranked[0].certainty >= ESTABLISHED else None

    @property
    def ruled_out(self) -> tuple[CauseFinding, ...]:
        """The causes ruled out or weakened to 0 or below: reported apart, never ranked."""
        return tuple(c for c in self.causes if is_ruled_out(c.certainty))

    def gather(self, finding: CauseFinding) -> tuple[str, ...]:
        """The cause's "what to gather next", less what was given: an item naming a `diagnose
        --OPTION` whose evidence is in the bundle (GATHERED_BY) is not asked for again."""
        kinds = self.bundle.available_kinds() | {f.kind for f in self.facts}
        return tuple(item for item in finding.cause.gather
                     if not any(GATHERED_BY.get(option) in kinds for option in _OPTION.findall(item)))

    @property
    def notes(self) -> tuple[str, ...]:
        """Lines every report shows near its verdict: how the evidence was read where that can change
        it (logs and captures in local time matched without --tz)."""
        return tuple(dict.fromkeys(str(f.attrs["clock_note"]) for f in self.facts
                                   if f.kind == "capture.status64_match" and f.get("clock_note")))

    @property
    def unknowns(self) -> tuple[RuleOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status == "unknown")


def diagnosis_facts(bundle: EvidenceBundle) -> tuple[Fact, ...]:
    """The bundle's facts plus the profile and the answers as facts (unless already there)."""
    facts = list(bundle.facts)
    kinds = {f.kind for f in facts}
    if bundle.profile and "site.profile" not in kinds:
        facts.append(profile_from_mapping(bundle.profile, "bundle profile").to_fact())
    answered = {f.subject for f in facts if f.kind == "answer"}
    for question, value in bundle.answers.items():
        if question not in answered:
            facts.append(make_fact("answer", question, "answers", source="answers", value=value))
    return tuple(facts)


def _answer_question(binding: Binding) -> str | None:
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
            question = _answer_question(binding)
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

        kinds, ignored = fact_kinds(), []
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
                    reasons.append(f"{binding.name}: no {binding.kind} with {'; '.join(failing)} "
                                   f"on the nearest, {nearest['subject']}")
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
        missing_negated = sorted({m for b in rule.when.bindings() if b.name in negated
                                  and (m := availability.missing(b))})
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


def analyze(bundle: EvidenceBundle, rulebook: Rulebook, engine: Engine | None = None,
            availability: Availability | None = None) -> Diagnosis:
    engine = engine or create_engine(rulebook)
    facts = diagnosis_facts(bundle)
    result = engine.run(facts)
    by_rule: dict[str, list[Firing]] = defaultdict(list)
    for firing in result.firings:
        by_rule[firing.rule_id].append(firing)
    availability = availability or Availability.of(bundle, facts)
    index = FactIndex(facts)
    outcomes = tuple(evaluate(rule, rule.id in by_rule, availability, index) for rule in rulebook.rules)
    final, findings = conclude(outcomes, by_rule, facts, rulebook)
    questions = questions_to_ask(rulebook, facts, outcomes, by_rule, availability, (final, findings))
    return Diagnosis(final, findings, outcomes, questions, facts, bundle, rulebook,
                     result.warnings, result.unused_kinds, result.engine or engine.name, result.firings,
                     result.reason)


def conclude(outcomes: Sequence[RuleOutcome], by_rule: Mapping[str, Sequence[Firing]], facts: Sequence[Fact],
             rulebook: Rulebook) -> tuple[Verdict, tuple[CauseFinding, ...]]:
    """Rank the causes of the rules that fired, and reach the verdict."""
    supports: dict[str, list[RuleSupport]] = defaultdict(list)
    for outcome in outcomes:
        if outcome.status != "fired":
            continue
        rule = outcome.rule
        firings = sorted(by_rule[rule.id], key=lambda f: f.bindings)
        supports[rule.conclude.cause].append(RuleSupport(
            rule, rule.conclude.certainty, explanation(rule, firings, facts),
            tuple(f.bindings for f in firings[:MAX_MATCHES]), len(firings)))

    findings = []
    for cause_id, items in supports.items():
        cause = rulebook.causes[cause_id]
        items.sort(key=lambda s: (-s.certainty, s.rule.id))
        evidence: dict[int, None] = {}
        for item in items:
            for match in item.matches:
                for _, index in match:
                    evidence.setdefault(index, None)
        findings.append(CauseFinding(cause, round(combine_all(s.certainty for s in items), 4), tuple(items),
                                     tuple(evidence)))
    problem_established = any(f.certainty >= ESTABLISHED and f.cause.verdict in PROBLEMS for f in findings)
    if problem_established:
        findings = [f for f in findings if f.cause.verdict is not Verdict.INCONCLUSIVE]
    final, ranking = order([(f.cause.id, f.cause.verdict, f.certainty) for f in findings])
    return final, tuple(findings[i] for i in ranking)


def question_ids(rule: Rule) -> frozenset[str]:
    """The questions a rule reads an answer to."""
    return frozenset(q for b in rule.when.bindings() if b.kind == "answer" and (q := _answer_question(b)))


def _top(findings: Sequence[CauseFinding]) -> tuple[str | None, float]:
    top = next((f for f in findings if not is_ruled_out(f.certainty)), None)
    return (None, 0.0) if top is None else (top.cause.id, top.certainty)


def what_if(rulebook: Rulebook, facts: Sequence[Fact], outcomes: Sequence[RuleOutcome],
            by_rule: Mapping[str, Sequence[Firing]], availability: Availability, qid: str,
            choice: str) -> tuple[Verdict, tuple[CauseFinding, ...]]:
    """The verdict and ranking if question `qid` were answered `choice`. Only the rules that read that
    answer are re-evaluated (with the reference evaluator); every other outcome stands."""
    from diagnose.engine.reference import ReferenceEngine

    affected = [r for r in rulebook.rules if qid in question_ids(r)]
    combined = [*facts, make_fact("answer", qid, "answers", source="what-if", value=choice)]
    kinds = frozenset().union(*(r.kinds() for r in affected)) if affected else frozenset()
    chosen = [i for i, f in enumerate(combined) if f.kind in kinds and not (f.kind == "answer" and f.subject == qid
                                                                             and i < len(facts))]
    sub_book = Rulebook(tuple(affected), rulebook.causes, rulebook.questions)
    result = ReferenceEngine(sub_book).run([combined[i] for i in chosen])
    new_by_rule: dict[str, list[Firing]] = {k: list(v) for k, v in by_rule.items()}
    for rule in affected:
        new_by_rule[rule.id] = []
    for firing in result.firings:
        new_by_rule[firing.rule_id].append(Firing(firing.rule_id, tuple((n, chosen[i]) for n, i in firing.bindings)))
    answered = Availability(None if availability.all_kinds else availability.kinds,
                            None if availability.all_answers else availability.answered | {qid},
                            tuple(availability.unavailable - {f"answer:{qid}", "answer"}))
    ids = {r.id for r in affected}
    index = FactIndex(combined)
    new_outcomes = [evaluate(o.rule, bool(new_by_rule.get(o.rule.id)), answered, index) if o.rule.id in ids else o
                    for o in outcomes]
    return conclude(new_outcomes, new_by_rule, combined, rulebook)


def questions_to_ask(rulebook: Rulebook, facts: Sequence[Fact], outcomes: Sequence[RuleOutcome],
                     by_rule: Mapping[str, Sequence[Firing]], availability: Availability,
                     current: tuple[Verdict, Sequence[CauseFinding]]) -> tuple[QuestionPrompt, ...]:
    """The unanswered questions whose answer could change the verdict or the top of the ranking,
    the most influential first: a verdict change counts 2, a new top cause 1, plus the largest move
    of any cause's certainty."""
    verdict_now, findings_now = current
    top_now, _ = _top(findings_now)
    before = {f.cause.id: f.certainty for f in findings_now}
    prompts = []
    for qid, question in rulebook.questions.items():
        if availability.all_answers or qid in availability.answered:
            continue
        affected = [r for r in rulebook.rules if qid in question_ids(r)]
        if not affected:
            continue
        effects, value = [], 0.0
        for choice in question.choices:
            new_verdict, new_findings = what_if(rulebook, facts, outcomes, by_rule, availability, qid, choice)
            top, cf = _top(new_findings)
            effects.append(AnswerEffect(choice, new_verdict, top, cf))
            if new_verdict is not verdict_now or top != top_now:
                after = {f.cause.id: f.certainty for f in new_findings}
                shift = max(abs(after.get(c, 0.0) - before.get(c, 0.0)) for c in after.keys() | before.keys())
                value = max(value, 2.0 * (new_verdict is not verdict_now) + 1.0 * (top != top_now) + shift)
        if value > 0:
            prompts.append(QuestionPrompt(question, round(value, 4), tuple(r.id for r in affected),
                                          tuple(sorted({r.conclude.cause for r in affected})), tuple(effects)))
    prompts.sort(key=lambda p: (-p.weight, p.question.id))
    return tuple(prompts)
