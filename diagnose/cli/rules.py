"""`diagnose rules list|show|lint|test|new`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, TypeVar

import click

from diagnose.cli.common import engine_option, load_rules, rule_dirs, rules_option
from diagnose.errors import RuleError, UsageError
from diagnose.rulebook.loader import RuleErrors, load_rulebook
from diagnose.writing import write_file

T = TypeVar("T")


@click.group()
def rules() -> None:
    """List, show, lint, test and create rules."""


@rules.command("list")
@rules_option
def list_rules(rule_dirs: tuple[str, ...]) -> None:
    """One line per rule: id, status, certainty, cause."""
    rulebook = load_rules(rule_dirs)
    width = max((len(r.id) for r in rulebook.rules), default=10)
    for rule in rulebook.rules:
        click.echo(f"{rule.id:<{width}}  {rule.status.value:<12} {rule.conclude.certainty:+.2f}  {rule.conclude.cause}")
    click.echo(
        f"\n{len(rulebook.rules)} rules, {len(rulebook.causes)} causes, {len(rulebook.questions)} questions; "
        f"rulebook {rulebook.version}"
    )


@rules.command("show")
@click.argument("rule_id")
@rules_option
def show_rule(rule_id: str, rule_dirs: tuple[str, ...]) -> None:
    """Show a rule's file and what it concludes."""
    rulebook = load_rules(rule_dirs)
    rule = rulebook.rule(rule_id)
    if rule is None:
        raise UsageError(f"no rule {rule_id!r} (see `diagnose rules list`)")
    click.echo(f"# {rule.path}")
    click.echo(Path(rule.path).read_text(encoding="utf-8-sig").rstrip())
    cause = rulebook.causes[rule.conclude.cause]
    click.echo(f"\n# concludes {cause.id} ({cause.verdict.value}): {cause.title}")


@rules.command("lint")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option(
    "--checks",
    "check_dirs",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Extra checks directory (repeatable). Also DIAGNOSE_CHECKS.",
)
@click.option("--strict", is_flag=True, help="Warnings fail the lint too.")
def lint(directory: str | None, check_dirs: tuple[str, ...], strict: bool) -> None:
    """Check the shipped rules, plus DIRECTORY's (which win by id), against the checks, the fact kinds and
    the cause and question catalogues. Each finding is `file:line: error|warning|info: message`; exit 3 on
    any error (and, with --strict, on any warning)."""
    from diagnose.collect import default_check_dirs, load_checks
    from diagnose.exchange import catalogue
    from diagnose.kinds import fact_kinds
    from diagnose.paths import extra_dirs
    from diagnose.probes import PROBES
    from diagnose.rulebook.lint import CheckKinds, Severity, counts, errors, lint
    from diagnose.thresholds import thresholds

    dirs = rule_dirs((directory,) if directory else ())
    if directory and not Path(directory).is_dir():
        raise UsageError(f"no such directory: {directory}")
    try:
        rulebook = load_rulebook(dirs)
    except RuleErrors as exc:
        for finding in errors(exc.errors):
            click.echo(f"{finding}", err=True)
        sys.exit(RuleError.exit_code)
    problems: list[RuleError] = []
    given = extra_dirs("DIAGNOSE_CHECKS", check_dirs)

    def read(load: Callable[[], T], empty: T) -> T:
        try:
            return load()
        except RuleError as exc:
            problems.append(exc)
            return empty

    checks: list[CheckKinds] = read(
        lambda: [CheckKinds(c.id, c.probe, c.kinds, c.path) for c in load_checks(default_check_dirs(given))], []
    )
    table = read(lambda: catalogue(given), None)
    site = {"exchange_version": table.version_names, "published": table.protocol_names} if table else {}
    read(lambda: thresholds(given), None)
    findings = errors(problems) + lint(rulebook, fact_kinds(), checks, PROBES, site)
    for finding in findings:
        click.echo(f"{finding}", err=finding.severity is Severity.ERROR)
    found = counts(findings)
    failed = found[Severity.ERROR] or (strict and found[Severity.WARNING])
    tally = ", ".join(f"{n} {s.value}{'s' if n != 1 and s is not Severity.INFO else ''}" for s, n in found.items())
    click.echo(
        f"{'failed' if failed else 'ok'}: {len(rulebook.rules)} rules, {len(rulebook.causes)} causes, "
        f"{len(rulebook.questions)} questions (rulebook {rulebook.version}); {tally}"
    )
    if failed:
        sys.exit(RuleError.exit_code)


@rules.command("operators")
def operators() -> None:
    """The rule language's operators: the field types, the operand, joins, and the durable_rules form."""
    from diagnose.rulebook.operators import table_rows

    rows = [("operator", "fields", "operand", "joins", "durable_rules"), *table_rows()]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])


@rules.command("test")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--rule", "only", multiple=True, help="Only this rule (repeatable).")
@click.option("-v", "--verbose", is_flag=True, help="List passing tests too.")
@engine_option
def test(directory: str | None, only: tuple[str, ...], verbose: bool, engine_name: str | None) -> None:
    """Run every rule's inline tests through both engines (durable_rules and the reference), or the
    reference alone where durable_rules does not import."""
    from diagnose.ruletests import rule_test_engines, run_rule_tests

    rulebook = load_rules((directory,) if directory else ())
    engines, which = rule_test_engines(rulebook, engine_name)
    passed = failed = 0
    for outcome in run_rule_tests(rulebook, only, engines):
        if outcome.passed:
            passed += 1
            if verbose:
                click.echo(f"PASS {outcome.rule.id}: {outcome.test.name}")
        else:
            failed += 1
            click.echo(f"FAIL {outcome.where}: {outcome.rule.id}: {outcome.test.name}: {outcome.detail}")
    click.echo(f"{passed} passed, {failed} failed (each through {which})")
    if failed:
        sys.exit(RuleError.exit_code)


TEMPLATE = """\
id: {id}
title: {title}
status: experimental          # experimental | test | stable (test/stable need a firing and a silent test)
description: >-
  What the rule recognises, and why it points at the cause.
references: []
when:
  log: {{kind: log.status_summary, scope: all, status64_count: {{gt: 0}}}}
conclude:
  cause: {cause}
  certainty: 0.5
  explain: "{{log.status64_count}} Status 64 entries"
tests:
  - name: fires when ...
    facts:
      - {{kind: log.status_summary, subject: all, attrs: {{scope: all, status64_count: 3}}}}
    expect: {{fires: true}}
  - name: silent when ...
    facts:
      - {{kind: log.status_summary, subject: all, attrs: {{scope: all, status64_count: 0}}}}
    expect: {{fires: false}}
"""


@rules.command("new")
@click.argument("rule_id")
@click.option(
    "--dir",
    "directory",
    default="rules.d",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where to write the rule (use with --rules DIR / DIAGNOSE_RULES).",
)
@click.option("--cause", default="dirty-close-by-design", show_default=True, help="The cause it concludes.")
@click.option("--title", default="Describe what this rule recognises", help="Rule title.")
def new(rule_id: str, directory: str, cause: str, title: str) -> None:
    """Write a rule skeleton, with a firing and a silent test, ready to edit, lint and test."""
    import re

    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", rule_id):
        raise UsageError("a rule id is lowercase letters, digits and dashes")
    path = Path(directory) / f"{rule_id}.yaml"
    if path.exists():
        raise UsageError(f"{path} exists; not overwriting it")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, TEMPLATE.format(id=rule_id, title=title, cause=cause))
    click.echo(
        f"wrote {path}\nnext: edit it, then `diagnose rules lint {directory}` and `diagnose rules test "
        f"{directory}`; use it with `--rules {directory}`"
    )
