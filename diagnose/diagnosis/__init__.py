"""From an evidence bundle to a diagnosis: run the engine, then rank, explain and list unknowns.

* `model` - what a diagnosis is (Diagnosis, CauseFinding, RuleOutcome, QuestionPrompt...);
* `availability` - which evidence was gathered, and each rule's outcome (fired, silent, unknown);
* `explain` - a fired rule's explanation from its template;
* `findings` - causes from the fired rules, certainties combined, ranked, and the verdict;
* `ranking` - certainty factors and the verdict rule (plain arithmetic, no model);
* `questions` - the unanswered questions that could change the verdict, by what-if."""

from __future__ import annotations

from collections import defaultdict

from diagnose.diagnosis.availability import Availability, FactIndex, evaluate
from diagnose.diagnosis.findings import conclude
from diagnose.diagnosis.model import (
    AnswerEffect,
    CauseFinding,
    Diagnosis,
    QuestionPrompt,
    RuleOutcome,
    RuleSupport,
)
from diagnose.diagnosis.questions import questions_to_ask
from diagnose.engine import Engine, Firing, create_engine
from diagnose.facts import EvidenceBundle, Fact, make_fact
from diagnose.profile import profile_from_mapping
from diagnose.rulebook.model import Rulebook

__all__ = [
    "AnswerEffect",
    "Availability",
    "CauseFinding",
    "Diagnosis",
    "QuestionPrompt",
    "RuleOutcome",
    "RuleSupport",
    "analyze",
    "diagnosis_facts",
]


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


def analyze(
    bundle: EvidenceBundle, rulebook: Rulebook, engine: Engine | None = None, availability: Availability | None = None
) -> Diagnosis:
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
    return Diagnosis(
        final,
        findings,
        outcomes,
        questions,
        facts,
        bundle,
        rulebook,
        result.warnings,
        result.unused_kinds,
        result.engine or engine.name,
        result.firings,
        result.reason,
    )
