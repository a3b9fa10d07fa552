"""Run the rules' inline tests through both engines (durable_rules and the reference evaluator), or
through the reference evaluator alone where durable_rules does not import (`--engine auto`, with a
note) or when asked (`--engine reference`).

A test passes when, on its facts, (1) the rule fires or stays silent as expected, (2) it is
unknown or not, when that is expected, (3) the rule's cause reaches the expected certainty (±0.001)
when one is given, and (4) both engines produce exactly the same firings for the whole rulebook.
In a test every kind of evidence counts as gathered, except the kinds listed under `unavailable`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from diagnose.diagnosis import Availability, analyze
from diagnose.engine import LABELS, Engine, choose_engine, create_engine
from diagnose.errors import EngineUnavailable
from diagnose.facts import EvidenceBundle
from diagnose.rulebook.model import Rule, Rulebook, RuleTest


@dataclass(frozen=True)
class TestOutcome:
    rule: Rule
    test: RuleTest
    passed: bool
    detail: str

    @property
    def where(self) -> str:
        return f"{self.rule.path}:{self.test.line}"


def run_rule_test(rulebook: Rulebook, rule: Rule, test: RuleTest, engines: Iterable[Engine]) -> TestOutcome:
    bundle = EvidenceBundle(facts=test.facts)
    availability = Availability(None, None, test.unavailable)
    results = [(engine.name, analyze(bundle, rulebook, engine, availability)) for engine in engines]
    keys = {name: sorted(f.key() for f in diagnosis.firings) for name, diagnosis in results}
    names = list(keys)
    for other in names[1:]:
        if keys[other] != keys[names[0]]:
            only_a = sorted(set(keys[names[0]]) - set(keys[other]))
            only_b = sorted(set(keys[other]) - set(keys[names[0]]))
            return TestOutcome(
                rule, test, False, f"engines disagree: only {names[0]}: {only_a[:3]}; only {other}: {only_b[:3]}"
            )
    problems = []
    for name, diagnosis in results:
        outcome = next(o for o in diagnosis.outcomes if o.rule.id == rule.id)
        fired = outcome.status == "fired"
        if fired != test.expect.fires:
            problems.append(
                f"{name}: expected {'to fire' if test.expect.fires else 'no firing'}, "
                f"but the rule was {outcome.status}" + (f" ({outcome.reason})" if outcome.missing else "")
            )
        if test.expect.unknown is not None and (outcome.status == "unknown") != test.expect.unknown:
            problems.append(f"{name}: expected unknown={test.expect.unknown}, got {outcome.status}")
        if test.expect.certainty is not None:
            finding = next((c for c in diagnosis.causes if c.cause.id == rule.conclude.cause), None)
            got = finding.certainty if finding else 0.0
            if abs(got - test.expect.certainty) > 0.001:
                problems.append(
                    f"{name}: expected certainty {test.expect.certainty} for {rule.conclude.cause}, got {got}"
                )
    if problems:
        return TestOutcome(rule, test, False, "; ".join(dict.fromkeys(problems)))
    return TestOutcome(rule, test, True, "both engines agree")


def rule_test_engines(rulebook: Rulebook, engine_name: str | None = None) -> tuple[list[Engine], str]:
    """The engines to test with (`engine_name` as for --engine: auto, the default, is both where
    durable_rules imports), and one line saying which and why."""
    choice = choose_engine(engine_name)
    reference = create_engine(rulebook, "reference")
    if choice.name == "reference":
        return [reference], f"{LABELS['reference']} alone ({choice.reason})"
    durable = create_engine(rulebook, "durable")
    try:
        durable.run([])
    except EngineUnavailable as exc:
        if choice.requested != "auto":
            raise
        return [reference], f"{LABELS['reference']} alone (auto: {exc.cause})"
    return [durable, reference], f"{LABELS['durable']} and {LABELS['reference']}, compared"


def run_rule_tests(
    rulebook: Rulebook, only: Iterable[str] = (), engines: list[Engine] | None = None
) -> Iterator[TestOutcome]:
    engines = engines or rule_test_engines(rulebook)[0]
    wanted = set(only)
    for rule in rulebook.rules:
        if wanted and rule.id not in wanted:
            continue
        for test in rule.tests:
            yield run_rule_test(rulebook, rule, test, engines)
