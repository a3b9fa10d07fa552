"""`diagnose causes list|show`."""

from __future__ import annotations

import click

from diagnose.cli.common import load_rules, rules_option
from diagnose.errors import UsageError


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
        click.echo(f"{cause.id:<{width}}  {cause.verdict.value:<16} {cause.title}")


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
    click.echo(f"{cause.id} ({cause.verdict.value})\n{cause.title}\n")
    if cause.description:
        click.echo(cause.description.strip() + "\n")
    click.echo("Rules:")
    for rule in rulebook.rules:
        if rule.conclude.cause == cause.id:
            click.echo(f"  {rule.conclude.certainty:+.2f}  {rule.id}: {rule.title}")
    click.echo("\nWhat to do:")
    for step in cause.remediation:
        click.echo(f"  - {step}")
    for item in cause.gather:
        click.echo(f"  - gather: {item}")
    for ref in cause.references:
        click.echo(f"  see {ref}")
    if bundle:
        from diagnose.analysis import analyze
        from diagnose.facts import load_bundle
        from diagnose.kinds import fact_kinds

        evidence = load_bundle(bundle)
        fact_kinds().check_bundle(evidence, bundle)
        diagnosis = analyze(evidence, rulebook)
        click.echo(f"\nIn {bundle}:")
        finding = next((c for c in diagnosis.causes if c.cause.id == cause.id), None)
        if finding:
            click.echo(f"  certainty {finding.certainty:.2f}")
        for outcome in diagnosis.outcomes:
            if outcome.rule.conclude.cause != cause.id:
                continue
            click.echo(f"  rule {outcome.rule.id}: {outcome.status} - {outcome.reason}")
            support = next((s for s in finding.support if s.rule.id == outcome.rule.id), None) if finding else None
            if support:
                click.echo(f"    {support.explain}")
                for name, index in support.matches[0]:
                    fact = diagnosis.facts[index]
                    click.echo(f"    {name} = {fact.kind} {fact.subject} [{fact.provenance.cite()}]")
