"""Pieces shared by the command modules: rulebook loading, output, colour."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

import click

from diagnose.errors import OutputError
from diagnose.paths import data_dir, extra_dirs
from diagnose.safetext import neutralise
from diagnose.writing import reason, write_file

if typing.TYPE_CHECKING:  # the rulebook is loaded only by the commands that need rules (not the probes)
    from diagnose.rulebook.model import Rulebook

rules_option = click.option(
    "--rules",
    "rule_dirs",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Extra rule directory (repeatable); its rules win over shipped ones with the same id. Also DIAGNOSE_RULES.",
)


engine_option = click.option(
    "--engine",
    "engine_name",
    type=click.Choice(["auto", "durable", "reference"]),
    default=None,
    help="Rule engine: durable_rules, the reference evaluator, or auto "
    "(durable_rules where it imports, else the reference). Also "
    "DIAGNOSE_ENGINE; default auto.",
)


def rule_dirs(given: Sequence[str] = ()) -> list[Path]:
    return [data_dir("rules"), *extra_dirs("DIAGNOSE_RULES", tuple(given))]


def load_rules(given: Sequence[str] = ()) -> Rulebook:
    from diagnose.rulebook.loader import load_rulebook

    return load_rulebook(rule_dirs(given))


def use_color(output: str | None) -> bool:
    return output is None and sys.stdout is not None and sys.stdout.isatty() and "NO_COLOR" not in os.environ


def write_output(text: str, output: str | None) -> None:
    """The command's result, to FILE (atomically: see diagnose/writing.py) or to standard output."""
    text = text if text.endswith("\n") else text + "\n"
    if output:
        write_file(output, text)
    else:
        write_stdout(text)


def write_stdout(text: str) -> None:
    """Print to standard output. A reader that stops early (`diagnose ... | head -1`) is not an error: the
    rest is dropped quietly and the command ends with its usual code. A closed or failing standard output
    (`>&-`, `>/dev/full`) is an OutputError."""
    if sys.stdout is None:
        raise OutputError("cannot write the output: standard output is closed")
    try:
        click.echo(text, nl=False)  # (click flushes)
    except BrokenPipeError:
        silence_stdout()
    except OSError as exc:
        silence_stdout()
        raise OutputError(f"cannot write to standard output: {reason(exc)}") from None


def silence_stdout() -> None:
    """Point standard output at the null device, so that what is still buffered in it cannot fail again
    when Python flushes it on the way out (which would print `Exception ignored ... BrokenPipeError`)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, AttributeError, ValueError):  # no stdout file descriptor at all: nothing to flush
        pass


class _Warnings(logging.Handler):
    """Warnings of the probes (`ProbeContext.log`) as lines on stderr, neutralised, and scrubbed
    (pseudonymised) when the run is redacted."""

    def __init__(self, scrub: Callable[[str], str] | None) -> None:
        super().__init__(logging.WARNING)
        self.scrub = scrub

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        note(self.scrub(message) if self.scrub else message)


_SCRUB: list[Callable[[str], str]] = []  # the redacted run's scrubber, once it has one


def warnings_on_stderr(scrub: Callable[[str], str] | None = None) -> None:
    """Route the warnings logged under `diagnose` through `note` (replacing an earlier routing); the
    error line of a redacted run is scrubbed with `scrub` too."""
    _SCRUB[:] = [scrub] if scrub else []
    logger = logging.getLogger("diagnose")
    for handler in [h for h in logger.handlers if isinstance(h, _Warnings)]:
        logger.removeHandler(handler)
    logger.addHandler(_Warnings(scrub))
    logger.propagate = False


MAX_MESSAGE_CHARS = 2000  # an error or warning quoting evidence (a line of a hostile file) is cut here


def clip(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`message` cut to `limit` characters, saying how long it was: one line stays one readable line."""
    if len(message) <= limit:
        return message
    return f"{message[:limit]}... ({len(message) - limit} more characters)"


def error_line(exc: Exception) -> str:
    """The one line an expected failure prints, scrubbed in a redacted run, cut to a readable length."""
    message = str(exc)
    return "diagnose: error: " + clip(_SCRUB[0](message) if _SCRUB else message)


def note(message: str) -> None:
    """One line on stderr; whatever in it came from the evidence cannot drive the terminal. A stderr
    nobody reads any more (a closed pipe, a full disk) does not stop the command."""
    with contextlib.suppress(OSError):
        click.echo(neutralise(clip(message)), err=True)
