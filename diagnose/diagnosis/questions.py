"""The questions worth asking: those whose answer could change the verdict or the top cause, found
by re-evaluating only the rules that read each answer ("what if it were answered so?")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from diagnose.diagnosis.availability import Availability, FactIndex, answer_question, evaluate
from diagnose.diagnosis.findings import conclude
from diagnose.diagnosis.model import AnswerEffect, CauseFinding, QuestionPrompt, RuleOutcome
from diagnose.diagnosis.ranking import is_ruled_out
from diagnose.engine import Firing
from diagnose.facts import Fact, make_fact
from diagnose.rulebook.model import Rule, Rulebook, Verdict


def question_ids(rule: Rule) -> frozenset[str]:
    """The questions a rule reads an answer to."""
    return frozenset(q for b in rule.when.bindings() if b.kind == "answer" and (q := answer_question(b)))


def _top(findings: Sequence[CauseFinding]) -> tuple[str | None, float]:
    top = next((f for f in findings if not is_ruled_out(f.certainty)), None)
    return (None, 0.0) if top is None else (top.cause.id, top.certainty)


def what_if(
    rulebook: Rulebook,
    facts: Sequence[Fact],
    outcomes: Sequence[RuleOutcome],
    by_rule: Mapping[str, Sequence[Firing]],
    availability: Availability,
    qid: str,
    choice: str,
) -> tuple[Verdict, tuple[CauseFinding, ...]]:
    """The verdict and ranking if question `qid` were answered `choice`. Only the rules that read that
    answer are re-evaluated (with the reference evaluator); every other outcome stands."""
    from diagnose.engine.reference import ReferenceEngine

    affected = [r for r in rulebook.rules if qid in question_ids(r)]
    combined = [*facts, make_fact("answer", qid, "answers", source="what-if", value=choice)]
    kinds = frozenset().union(*(r.kinds() for r in affected)) if affected else frozenset()
    chosen = [
        i
        for i, f in enumerate(combined)
        if f.kind in kinds and not (f.kind == "answer" and f.subject == qid and i < len(facts))
    ]
    sub_book = Rulebook(tuple(affected), rulebook.causes, rulebook.questions)
    result = ReferenceEngine(sub_book).run([combined[i] for i in chosen])
    new_by_rule: dict[str, list[Firing]] = {k: list(v) for k, v in by_rule.items()}
    for rule in affected:
        new_by_rule[rule.id] = []
    for firing in result.firings:
        new_by_rule[firing.rule_id].append(Firing(firing.rule_id, tuple((n, chosen[i]) for n, i in firing.bindings)))
    answered = Availability(
        None if availability.all_kinds else availability.kinds,
        None if availability.all_answers else availability.answered | {qid},
        tuple(availability.unavailable - {f"answer:{qid}", "answer"}),
    )
    ids = {r.id for r in affected}
    index = FactIndex(combined)
    new_outcomes = [
        evaluate(o.rule, bool(new_by_rule.get(o.rule.id)), answered, index) if o.rule.id in ids else o for o in outcomes
    ]
    return conclude(new_outcomes, new_by_rule, combined, rulebook)


def questions_to_ask(
    rulebook: Rulebook,
    facts: Sequence[Fact],
    outcomes: Sequence[RuleOutcome],
    by_rule: Mapping[str, Sequence[Firing]],
    availability: Availability,
    current: tuple[Verdict, Sequence[CauseFinding]],
) -> tuple[QuestionPrompt, ...]:
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
            prompts.append(
                QuestionPrompt(
                    question,
                    round(value, 4),
                    tuple(r.id for r in affected),
                    tuple(sorted({r.conclude.cause for r in affected})),
                    tuple(effects),
                )
            )
    prompts.sort(key=lambda p: (-p.weight, p.question.id))
    return tuple(prompts)
