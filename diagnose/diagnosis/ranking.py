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

The ranking agrees with the verdict (order()):

1. the cause that decided the verdict (the one the verdict rule picked) comes first;
2. then the other established misconfiguration or fault causes;
3. then the rest with a certainty above 0;
4. last, the causes ruled out or weakened to 0 or below: reports list them only under "Ruled out or
   weakened", never in the ranked list (see RULED_OUT).

Within each group causes go by certainty, highest first; ties to the more severe class, then the id.
So a benign cause, however certain, never stands above the cause that made the verdict a
misconfiguration or a fault.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from diagnose.rulebook.model import Verdict

ESTABLISHED = 0.5
RULED_OUT = 0.0  # a cause at or below this certainty is ruled out or weakened, not ranked
SEVERITY = {Verdict.FAULT: 0, Verdict.MISCONFIGURATION: 1, Verdict.INCONCLUSIVE: 2, Verdict.BENIGN: 3}
PROBLEMS = (Verdict.MISCONFIGURATION, Verdict.FAULT)


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


def is_ruled_out(certainty: float) -> bool:
    return certainty <= RULED_OUT


def _by_certainty(causes: Sequence[tuple[str, Verdict, float]]) -> list[int]:
    return sorted(range(len(causes)), key=lambda i: (-causes[i][2], SEVERITY[causes[i][1]], causes[i][0]))


def _decider(causes: Sequence[tuple[str, Verdict, float]], ordered: Sequence[int]) -> int | None:
    """The index of the cause the verdict rule picks, or None when nothing is established."""
    established = [i for i in ordered if causes[i][2] >= ESTABLISHED]
    for wanted in (PROBLEMS, (Verdict.INCONCLUSIVE,), (Verdict.BENIGN,)):
        chosen = next((i for i in established if causes[i][1] in wanted), None)
        if chosen is not None:
            return chosen
    return None


def order(causes: Sequence[tuple[str, Verdict, float]]) -> tuple[Verdict, tuple[int, ...]]:
    """The verdict and the ranking of (id, class, certainty) triples, as indices, by the rules in the
    module docstring: the deciding cause first, established problems next, ruled-out causes last."""
    ordered = _by_certainty(causes)
    decider = _decider(causes, ordered)
    position = {i: n for n, i in enumerate(ordered)}

    def key(i: int) -> tuple[bool, bool, bool, int]:
        _, cls, cf = causes[i]
        return is_ruled_out(cf), i != decider, not (cf >= ESTABLISHED and cls in PROBLEMS), position[i]

    final = Verdict.INCONCLUSIVE if decider is None else causes[decider][1]
    return final, tuple(sorted(range(len(causes)), key=key))


def verdict(ranked: Iterable[tuple[Verdict, float]]) -> Verdict:
    """The verdict from (class, certainty) pairs, by the rule in the module docstring."""
    return order([("", cls, cf) for cls, cf in ranked])[0]
