"""Pieces shared by the command modules: rulebook loading, output, colour."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from diagnose.paths import data_dir, extra_dirs
from diagnose.rulebook.model import Rulebook

rules_option = click.option("--rules", "rule_dirs", multiple=True, type=click.Path(file_okay=False),
                            help="Extra rule directory (repeatable); its rules win over shipped ones with the same id. "
                                 "Also DIAGNOSE_RULES.")


engine_option = click.option("--engine", "engine_name", type=click.Choice(["auto", "durable", "reference"]),
                             default=None, help="Rule engine: durable_rules, the reference evaluator, or auto "
                                                "(durable_rules where it imports, else the reference). Also "
                                                "DIAGNOSE_ENGINE; default auto.")


def rule_dirs(given: Sequence[str] = ()) -> list[Path]:
    return [data_dir("rules"), *extra_dirs("DIAGNOSE_RULES", tuple(given))]


def load_rules(given: Sequence[str] = ()) -> Rulebook:
    from diagnose.rulebook.loader import load_rulebook

    return load_rulebook(rule_dirs(given))


def use_color(output: str | None) -> bool:
    return output is None and sys.stdout.isatty() and "NO_COLOR" not in os.environ


def write_output(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    else:
        click.echo(text, nl=not text.endswith("\n"))


def note(message: str) -> None:
    click.echo(message, err=True)
