"""One error hierarchy. The CLI turns each into one line and its exit code (diagnose/exitcodes.py)."""

from __future__ import annotations

from pathlib import Path

from diagnose.exitcodes import ExitCode


class DiagnoseError(Exception):
    """Base of every expected failure. `where` names the file and line, offset or JSON path."""

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class UsageError(DiagnoseError):
    """Bad command-line use."""

    exit_code = ExitCode.USAGE


class InputError(DiagnoseError):
    """An evidence file (bundle, log, capture, export) that cannot be read."""

    exit_code = ExitCode.USAGE


class OutputError(DiagnoseError):
    """A report, bundle or profile that cannot be written (disk full, read-only or missing folder...)."""

    exit_code = ExitCode.USAGE


class RuleError(DiagnoseError):
    """A rule, cause catalogue, fact-kind schema or check that is wrong."""

    exit_code = ExitCode.RULES


class ConfigError(DiagnoseError):
    """A site profile or answers file that is wrong."""

    exit_code = ExitCode.RULES


class EngineError(DiagnoseError):
    """The inference engine failed in a way the adapter could not absorb."""

    exit_code = ExitCode.RULES


class EngineUnavailable(EngineError):
    """The engine cannot run on this Python at all (durable_rules does not import); `auto` then uses
    the reference evaluator. `cause` is the reason alone, e.g. the ImportError's text."""

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.cause = cause or message


def where(path: object, line: int | None = None, *, offset: int | None = None, jpath: str | None = None) -> str:
    """Format a location: `file:line`, `file@offset` or `file:$.json.path`."""
    text = str(path)
    if line is not None:
        return f"{text}:{line}"
    if offset is not None:
        return f"{text}@{offset}"
    if jpath is not None:
        return f"{text}:{jpath}"
    return text


def read_input(path: Path, missing: str, directory: str) -> bytes:
    """The bytes of an evidence file read whole; a missing, unreadable or directory path, a FIFO or
    device, or a file over `bounds.MAX_SMALL_INPUT` is an InputError naming it."""
    from diagnose.bounds import read_small

    try:
        return read_small(path)
    except FileNotFoundError:
        raise InputError(missing, str(path)) from None
    except IsADirectoryError:
        raise InputError(directory, str(path)) from None
    except OSError as exc:
        raise InputError(exc.strerror or str(exc), str(path)) from None
