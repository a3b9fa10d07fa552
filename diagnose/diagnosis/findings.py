"""From the rules that fired to cause findings: each cause's certainty combined over its rules,
explained, ranked, and the verdict (by the rules in `diagnose.diagnosis.ranking`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from diagnose.diagnosis.explain import explanation
from diagnose.diagnosis.model import CauseFinding, RuleOutcome, RuleSupport
from diagnose.diagnosis.ranking import ESTABLISHED, PROBLEMS, combine_all, order
from diagnose.engine import Firing
from diagnose.facts import Fact
from diagnose.rulebook.model import Rulebook, Verdict

MAX_MATCHES = 20  # fact combinations kept per rule for the explanation (the count is always kept)


def conclude(
    outcomes: Sequence[RuleOutcome], by_rule: Mapping[str, Sequence[Firing]], facts: Sequence[Fact], rulebook: Rulebook
) -> tuple[Verdict, tuple[CauseFinding, ...]]:
    """Rank the causes of the rules that fired, and reach the verdict."""
    supports: dict[str, list[RuleSupport]] = defaultdict(list)
    for outcome in outcomes:
        if outcome.status != "fired":
            continue
        rule = outcome.rule
        firings = sorted(by_rule[rule.id], key=lambda f: f.bindings)
        supports[rule.conclude.cause].append(
            RuleSupport(
                rule,
                rule.conclude.certainty,
                explanation(rule, firings, facts),
                tuple(f.bindings for f in firings[:MAX_MATCHES]),
                len(firings),
            )
        )

    findings = []
    for cause_id, items in supports.items():
        cause = rulebook.causes[cause_id]
        items.sort(key=lambda s: (-s.certainty, s.rule.id))
        evidence: dict[int, None] = {}
        for item in items:
            for match in item.matches:
                for _, index in match:
                    evidence.setdefault(index, None)
        findings.append(
            CauseFinding(cause, round(combine_all(s.certainty for s in items), 4), tuple(items), tuple(evidence))
        )
    problem_established = any(f.certainty >= ESTABLISHED and f.cause.verdict in PROBLEMS for f in findings)
    if problem_established:
        findings = [f for f in findings if f.cause.verdict is not Verdict.INCONCLUSIVE]
    final, ranking = order([(f.cause.id, f.cause.verdict, f.certainty) for f in findings])
    return final, tuple(findings[i] for i in ranking)
