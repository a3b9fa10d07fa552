"""The `diagnose` command line. Thin: each command group lives in its own module, `run`, `collect` and
`analyze` over a session (diagnose/session.py). Exit codes: one table, diagnose/exitcodes.py."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from diagnose import __version__, interrupts
from diagnose.errors import DiagnoseError
from diagnose.exitcodes import ExitCode

# Every command, and where it lives: a module is imported only when its command runs (or help
# lists them), so `diagnose probe capture` does not pay for the rule loader and `analyze` not for probes.
COMMANDS = {
    "run": "diagnose.cli.run:run",
    "collect": "diagnose.cli.run:collect_cmd",
    "analyze": "diagnose.cli.run:analyze",
    "examples": "diagnose.cli.run:examples",
    "rules": "diagnose.cli.rules:rules",
    "causes": "diagnose.cli.causes:causes",
    "probe": "diagnose.cli.probe:probe",
}


def end(code: ExitCode, message: str | None = None) -> None:
    """diagnose.session.end, loaded when a command ends this way: importing it at start-up would delay
    `interrupts.install()` (the session module loads the collection and reporting side)."""
    if code is ExitCode.INTERRUPTED:
        interrupts.ignore()  # a second Ctrl-C must not interrupt the import below
    from diagnose import session

    session.end(code, message)


class _Group(click.Group):
    """Loads each command when used, and turns every expected failure into one line on stderr and
    its exit code."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, attr = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        interrupts.install()
        try:
            return super().main(*args, **kwargs)
        finally:  # the command is over and its exit code set: Ctrl-C now must not end the process by SIGINT
            interrupts.ignore()

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:  # while the command line is read (click would say "Aborted!", exit 1)
            end(ExitCode.INTERRUPTED, "diagnose: interrupted")
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            from diagnose.cli.common import error_line, warnings_on_stderr
            from diagnose.cli.console import tolerant_std_streams

            tolerant_std_streams()  # a cp1252 console or redirect must not fail on ≥ or a CJK computer name
            warnings_on_stderr()
            result = super().invoke(ctx)
        except DiagnoseError as exc:
            if interrupts.pending():  # the error is Ctrl-C's doing (a worker stopped by it, say)
                end(ExitCode.INTERRUPTED, "diagnose: interrupted")
            end(exc.exit_code, error_line(exc))
        except KeyboardInterrupt:
            end(ExitCode.INTERRUPTED, "diagnose: interrupted")
            raise
        except BrokenPipeError:  # standard output's reader left (`| head -1`): not an error
            from diagnose.cli.common import silence_stdout

            silence_stdout()
            sys.exit(int(ExitCode.OK))
        if interrupts.pending():  # a Ctrl-C whose KeyboardInterrupt got lost (in a finaliser, say)
            end(ExitCode.INTERRUPTED, "diagnose: interrupted")
        return result


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="diagnose")
def main() -> None:
    """Explain TMG "Failed Connection Attempt / Status 64" entries when publishing Exchange:
    benign dirty close, or the edge of a real misconfiguration?"""
