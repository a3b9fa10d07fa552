"""Guided questions after reasoning.

Only questions whose answer could change the verdict or the top of the ranking are asked (the
analysis works that out by trying each answer); the most influential comes first, and asking stops
when no remaining question could change anything. Questions are data (`rules/questions/*.yaml`);
answers become `answer` facts and are kept in the bundle.
"""

from __future__ import annotations

import typing
from dataclasses import replace

from diagnose.diagnosis import Diagnosis, QuestionPrompt, analyze
from diagnose.engine import Engine, create_engine
from diagnose.facts import EvidenceBundle
from diagnose.rulebook.model import Rulebook

SKIP = "skip"
# ask(prompt) returns a choice, SKIP to leave this question unanswered, or None to stop asking
Ask = typing.Callable[[QuestionPrompt, int], typing.Optional[str]]


def guided(
    bundle: EvidenceBundle, rulebook: Rulebook, ask: Ask, engine: Engine | None = None, limit: int = 10
) -> tuple[EvidenceBundle, Diagnosis, int]:
    """Ask until nothing left could change the answer. Returns the bundle with the answers, the
    final diagnosis and how many questions were answered."""
    engine = engine or create_engine(rulebook)
    diagnosis = analyze(bundle, rulebook, engine)
    skipped: set[str] = set()
    answered = 0
    while answered + len(skipped) < limit:
        pending = [q for q in diagnosis.questions if q.question.id not in skipped]
        if not pending:
            break
        prompt = pending[0]
        choice = ask(prompt, answered + len(skipped) + 1)
        if choice is None:
            break
        if choice == SKIP:
            skipped.add(prompt.question.id)
            continue
        bundle = replace(bundle, answers={**bundle.answers, prompt.question.id: choice})
        diagnosis = analyze(bundle, rulebook, engine)
        answered += 1
    return bundle, diagnosis, answered


def why(prompt: QuestionPrompt) -> list[str]:
    """What `?` shows: which rules and causes depend on the answer, and what each answer would do."""
    lines = [
        f"Asked because the answer decides rule(s) {', '.join(prompt.rules)} (causes: {', '.join(prompt.causes)})."
    ]
    if prompt.question.help:
        lines.append(prompt.question.help.strip())
    for effect in prompt.effects:
        top = f"{effect.top} ({effect.certainty:.2f})" if effect.top else "no cause"
        lines.append(f"  if {effect.choice}: verdict {effect.verdict.value}, top cause {top}")
    return lines
