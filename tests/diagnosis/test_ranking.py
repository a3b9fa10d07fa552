"""MYCIN certainty-factor combination and the verdict rule."""

from __future__ import annotations

import itertools
import math

from diagnose.diagnosis.ranking import combine, combine_all, verdict
from diagnose.rulebook.model import Verdict


def test_two_positives():
    assert math.isclose(combine(0.5, 0.6), 0.8)
    assert math.isclose(combine(0.8, 0.4), 0.88)


def test_two_negatives_mirror_the_positives():
    assert math.isclose(combine(-0.5, -0.6), -0.8)


def test_mixed_signs():
    assert math.isclose(combine(0.7, -0.6), 0.25)
    assert math.isclose(combine(-0.7, 0.6), -0.25)
    assert math.isclose(combine(0.4, -0.4), 0.0)


def test_total_conflict_is_zero_not_a_division_error():
    assert combine(1.0, -1.0) == 0.0
    assert combine(1.0, 0.3) == 1.0


def test_order_does_not_matter():
    values = [0.85, -0.6, 0.4, 0.3, -0.2]
    results = {round(combine_all(p), 12) for p in itertools.permutations(values)}
    assert len(results) == 1


def test_bounds_hold_on_a_grid():
    grid = [x / 10 for x in range(-10, 11)]
    for a, b in itertools.product(grid, grid):
        assert -1.0 <= combine(a, b) <= 1.0
        assert math.isclose(combine(a, b), combine(b, a), abs_tol=1e-12)


def test_verdict_rule():
    b, m, f, i = Verdict.BENIGN, Verdict.MISCONFIGURATION, Verdict.FAULT, Verdict.INCONCLUSIVE
    assert verdict([(b, 0.9)]) is b
    assert verdict([(b, 0.9), (m, 0.55)]) is m  # a real problem outranks benign noise
    assert verdict([(b, 0.9), (m, 0.45)]) is b  # below 0.5 it does not
    assert verdict([(m, 0.6), (f, 0.8)]) is f
    assert verdict([(i, 0.6), (b, 0.9)]) is i
    assert verdict([(b, 0.4)]) is i  # nothing established
    assert verdict([]) is i
