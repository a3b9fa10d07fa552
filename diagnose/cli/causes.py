"""`diagnose causes list|show`."""

from __future__ import annotations

import click

from diagnose.cli.common import load_rules, rules_option
from diagnose.errors import UsageError
from diagnose.safetext import neutralise


def _say(text: str) -> None:
    """A line on stdout: cause texts and the bundle's facts, no control character raw."""
    click.echo(neutralise(text, keep="\n"))


@click.group()
def causes() -> None:
    """The cause catalogue."""


@causes.command("list")
@rules_option
def list_causes(rule_dirs: tuple[str, ...]) -> None:
    """One line per cause: id, class, title."""
    rulebook = load_rules(rule_dirs)
    width = max((len(c) for c in rulebook.causes), default=10)
    for cause in sorted(rulebook.causes.values(), key=lambda c: c.id):
        _say(f"{cause.id:<{width}}  {cause.verdict.value:<16} {cause.title}")


@causes.command("show")
@click.argument("cause_id")
@click.option("--bundle", type=click.Path(dir_okay=False), help="Show the chain from this bundle's facts to the cause.")
@rules_option
def show_cause(cause_id: str, bundle: str | None, rule_dirs: tuple[str, ...]) -> None:
    """A cause: what it is, which rules support it, what to do (and, with --bundle, why)."""
    rulebook = load_rules(rule_dirs)
    cause = rulebook.causes.get(cause_id)
    if cause is None:
        raise UsageError(f"no cause {cause_id!r} (see `diagnose causes list`)")
    _say(f"{cause.id} ({cause.verdict.value})\n{cause.title}\n")
    if cause.description:
        _say(cause.description.strip() + "\n")
    _say("Rules:")
    for rule in rulebook.rules:
        if rule.conclude.cause == cause.id:
            _say(f"  {rule.conclude.certainty:+.2f}  {rule.id}: {rule.title}")
    _say("\nWhat to do:")
    for step in cause.remediation:
        _say(f"  - {step}")
    for item in cause.gather:
        _say(f"  - gather: {item}")
    for ref in cause.references:
        _say(f"  see {ref}")
    if bundle:
        from diagnose.diagnosis import analyze
        from diagnose.facts import load_bundle
        from diagnose.kinds import fact_kinds

        evidence = load_bundle(bundle)
        fact_kinds().check_bundle(evidence, bundle)
        diagnosis = analyze(evidence, rulebook)
        _say(f"\nIn {bundle}:")
        finding = next((c for c in diagnosis.causes if c.cause.id == cause.id), None)
        if finding:
            _say(f"  certainty {finding.certainty:.2f}")
        for outcome in diagnosis.outcomes:
            if outcome.rule.conclude.cause != cause.id:
                continue
            _say(f"  rule {outcome.rule.id}: {outcome.status} - {outcome.reason}")
            support = next((s for s in finding.support if s.rule.id == outcome.rule.id), None) if finding else None
            if support:
                _say(f"    {support.explain}")
                for name, index in support.matches[0]:
                    fact = diagnosis.facts[index]
                    _say(f"    {name} = {fact.kind} {fact.subject} [{fact.provenance.cite()}]")
