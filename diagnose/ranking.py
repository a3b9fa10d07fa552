"""Certainty factors, ranking and the verdict: plain Python over the engine's firings.

Certainty factors (MYCIN/EMYCIN, see shared/knowledge/causes.md §7). Each rule that fires gives
its cause the rule's certainty once, however many fact combinations matched it (correlated
evidence belongs in one rule, not several). The certainties of all rules concluding the same cause
combine pairwise, in any order:

    both > 0:        a + b(1 - a)
    both < 0:        a + b(1 + a)
    opposite signs:  (a + b) / (1 - min(|a|, |b|));   +1 with -1 gives 0 (total conflict).

The verdict rule:

1. A cause is *established* when its combined certainty is at least ESTABLISHED (0.5).
2. If an established cause is of class misconfiguration or fault, the verdict is the class of the
   highest such cause: a real problem outranks benign background noise.
3. Otherwise, if an established cause is of class inconclusive (e.g. "users report failures that
   no evidence explains"), the verdict is inconclusive.
4. Otherwise, if an established cause is benign, the verdict is benign.
5. Otherwise the verdict is inconclusive: nothing reached 0.5.

Causes of class inconclusive are residual: they are dropped from the ranking when a
misconfiguration or fault is established, because then the evidence does explain the symptoms.
Causes are sorted by certainty, highest first; ties go to the more severe class, then to the id.
"""

from __future__ import annotations

from collections.abc import Iterable

from diagnose.rulebook.model import Verdict

ESTABLISHED = 0.5
SEVERITY = {Verdict.FAULT: 0, Verdict.MISCONFIGURATION: 1, Verdict.INCONCLUSIVE: 2, Verdict.BENIGN: 3}


def combine(a: float, b: float) -> float:
    """Combine two certainty factors for the same hypothesis (commutative and associative)."""
    if a >= 0 and b >= 0:
        return a + b * (1 - a)
    if a <= 0 and b <= 0:
        return a + b * (1 + a)
    denominator = 1 - min(abs(a), abs(b))
    if denominator == 0:
        return 0.0
    return (a + b) / denominator


def combine_all(values: Iterable[float]) -> float:
    total: float | None = None
    for value in values:
        total = value if total is None else combine(total, value)
    return 0.0 if total is None else max(-1.0, min(1.0, total))


def verdict(ranked: Iterable[tuple[Verdict, float]]) -> Verdict:
    """The verdict from (class, certainty) pairs, by the rule in the module docstring."""
    established = [(cls, cf) for cls, cf in ranked if cf >= ESTABLISHED]
    problems = [item for item in established if item[0] in (Verdict.MISCONFIGURATION, Verdict.FAULT)]
    if problems:
        return max(problems, key=lambda item: (item[1], -SEVERITY[item[0]]))[0]
    if any(cls is Verdict.INCONCLUSIVE for cls, _ in established):
        return Verdict.INCONCLUSIVE
    if any(cls is Verdict.BENIGN for cls, _ in established):
        return Verdict.BENIGN
    return Verdict.INCONCLUSIVE
