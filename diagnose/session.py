"""The application layer under `diagnose run`, `collect` and `analyze`: one command's session.

A `Session` holds what a command reasons with (the rulebook, the engine it chose) and does the
stages in order: `collect` a `Plan` (profile, inputs, answers) into an evidence bundle, `report` on a
bundle as a `ReportRequest` says (format, output, --why, --fail-on, --strict, --save-evidence,
questions), and `finish`, which reports and ends the command with its code. `end` is the one place
a command ends with a code of the table in diagnose/exitcodes.py (Ctrl-C's 130 through
`interrupts.leave`, which stops the worker processes and leaves at once).
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from diagnose import interrupts
from diagnose.cli.common import load_rules, note, use_color, warnings_on_stderr, write_output
from diagnose.exitcodes import ExitCode
from diagnose.facts import EvidenceBundle, ProbeStatus
from diagnose.rulebook.model import Rulebook

if TYPE_CHECKING:  # (the command line imports this module for `end`: collection and reasoning load when used)
    from diagnose.collect import RunInputs
    from diagnose.diagnosis import Diagnosis, QuestionPrompt
    from diagnose.profile import SiteProfile

MAX_LISTED = 10_000


def end(code: int, message: str | None = None) -> None:
    """End the command with `code`, saying `message` on stderr first. 0 returns: the command ends
    normally (and the command line's last Ctrl-C checkpoint still runs). 130 leaves at once: abandoned
    probe threads must not hold the process open, and their worker processes are stopped."""
    code = ExitCode(code)
    if code is ExitCode.INTERRUPTED:
        interrupts.leave(code, message)
    if message:
        note(message)
    if code is not ExitCode.OK:
        sys.exit(int(code))


@dataclass
class Plan:
    """What to collect: the site profile, the inputs, the answers given beforehand."""

    profile: SiteProfile
    inputs: RunInputs
    answers: dict[str, str]
    description: str = ""
    profile_path: str | None = None

    def paths(self) -> list[str]:
        """Every input path given, and the files a log folder or glob names (the first MAX_LISTED):
        their folder and file names are redacted with --redact, in progress lines too."""
        i = self.inputs
        single = [self.profile_path, i.hosts_file, i.services_export, i.extra.get("ca_file")]
        found: list[str] = []
        for given in i.log_paths:
            try:
                found += (
                    glob.glob(given)
                    if glob.has_magic(given)
                    else [os.path.join(given, n) for n in os.listdir(given)]
                    if os.path.isdir(given)
                    else []
                )
            except OSError:
                continue  # the log probe says why it cannot read it
        return [
            *i.log_paths,
            *found[:MAX_LISTED],
            *i.capture_paths,
            *i.evidence_paths,
            *i.extra.get("dns_recorded", ()),
            *(str(p) for p in single if p),
        ]


@dataclass(frozen=True)
class ReportRequest:
    """What to do with a diagnosis: the report's format and target, and when the command fails."""

    fmt: str = "text"
    output: str | None = None  # a file, or standard output
    why: bool = False
    fail_on: float | None = None  # exit 1 when a misconfiguration/fault cause reaches this certainty
    strict: bool = False  # exit 4 when the evidence is incomplete
    save_evidence: str | None = None  # also save the bundle (with the answers given) here
    interactive: bool = False  # ask the questions that matter on the terminal

    def exit_code(self, diagnosis: Diagnosis) -> tuple[ExitCode, str | None]:
        """The code the command ends with, and the line that says why (or None)."""
        from diagnose.diagnosis.ranking import PROBLEMS  # (a diagnosis was made: the package is loaded)

        if self.fail_on is not None and any(
            c.certainty >= self.fail_on and c.cause.verdict in PROBLEMS for c in diagnosis.causes
        ):
            return ExitCode.FINDING, None
        probes = diagnosis.bundle.probes
        if self.strict and (diagnosis.unknowns or any(p.status is not ProbeStatus.COMPLETE for p in probes)):
            return ExitCode.INCOMPLETE, "diagnose: evidence incomplete (--strict): " + ", ".join(
                [p.check or p.probe for p in probes if p.status is not ProbeStatus.COMPLETE]
                + [o.rule.id for o in diagnosis.unknowns]
            )
        return ExitCode.OK, None


def interrupted(bundle: EvidenceBundle) -> bool:
    return any(p.status is ProbeStatus.INTERRUPTED for p in bundle.probes)


def leave_if_interrupted(bundle: EvidenceBundle, saved: str | None) -> None:
    """After Ctrl-C in collection: say what was kept, and exit 130."""
    if not interrupted(bundle):
        return
    where = f"; partial bundle written to {saved}" if saved else ""
    unfinished = sum(p.status is ProbeStatus.INTERRUPTED for p in bundle.probes)
    end(ExitCode.INTERRUPTED, f"diagnose: interrupted: {unfinished} check(s) did not finish{where}")


def redacted(bundle: EvidenceBundle, redact: bool, paths: Sequence[str] = ()) -> EvidenceBundle:
    """The bundle as it may leave the site: every address, name, user, rule name and input file and
    folder name (`paths`: the inputs given) replaced by a consistent token."""
    if not redact:
        return bundle
    from diagnose.redact import redact_bundle

    return redact_bundle(bundle, paths)


def progress_printer(
    enabled: bool | None, redact: bool = False, paths: Sequence[str] = ()
) -> Callable[[str, str], None] | None:
    """Progress lines on stderr; with --redact their addresses, names and users are pseudonymised too
    (tokens of their own: the bundle's are assigned only once everything is gathered)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    scrub: Callable[[str], str] | None = None
    if redact:
        import threading

        from diagnose.redact import Redactor

        redactor, lock = Redactor(), threading.Lock()
        redactor.paths(paths)

        def scrub(message: str) -> str:
            with lock:  # probes report from their own threads
                return redactor.text(message)

    warnings_on_stderr(scrub)  # the probes' warnings name files too
    if not enabled:
        return None

    def show(check: str, message: str) -> None:  # (a stderr that cannot be written does not stop a probe)
        note(f"  {check:<28} {scrub(message) if scrub else message}")

    return show


@dataclass
class Session:
    """One command: the rulebook it reads, and the engine it reasons with (none for `collect`)."""

    rulebook: Rulebook
    engine: Any = None
    ask: Callable[[QuestionPrompt, int], str | None] | None = None  # asks one question on the terminal
    stopped: bool = field(default=False, init=False)  # Ctrl-C stopped this session's collection

    @classmethod
    def start(
        cls,
        rule_dirs: Sequence[str] = (),
        engine_name: str | None = None,
        ask: Callable[[QuestionPrompt, int], str | None] | None = None,
    ) -> Session:
        """Load the rules and start the engine: its worker process loads the rules while the
        evidence is gathered or read."""
        from diagnose.engine import create_engine

        rulebook = load_rules(rule_dirs)
        return cls(rulebook, create_engine(rulebook, engine_name), ask)

    @classmethod
    def collecting(cls) -> Session:
        """A session that only collects: the rule files are read (answers are checked against the
        questions), no inference engine is loaded."""
        from diagnose.cli.common import rule_dirs
        from diagnose.rulebook.loader import load_rulebook

        return cls(load_rulebook(rule_dirs()))

    def collect(self, plan: Plan, options: dict[str, Any], redact: bool) -> EvidenceBundle:
        """Collect, with the files of the case folders given (--evidence-dir, or `analyze DIR`) added to
        the inputs; their unpacked zip members are removed afterwards and cited as zip!member."""
        from contextlib import ExitStack

        from diagnose.collect import collect, default_check_dirs, load_checks
        from diagnose.paths import extra_dirs

        checks = load_checks(
            default_check_dirs(extra_dirs("DIAGNOSE_CHECKS", options.get("check_dirs") or ())), validate=False
        )  # collect reads the parameters of the checks that run
        with ExitStack() as stack:
            case = None
            paths = plan.paths()
            if options.get("evidence_dirs"):  # (the case folder reader is loaded only for one)
                from diagnose.cli.case import open_for_run, shown_paths

                case = stack.enter_context(open_for_run(options["evidence_dirs"], plan.inputs, redact))
                paths = paths + (shown_paths(case) if case else [])
            bundle = collect(
                checks,
                plan.profile,
                plan.inputs,
                progress_printer(options.get("progress"), redact, paths),
                options.get("timeout") or 60.0,
                plan.answers,
                plan.description,
                self.rulebook.version,
            )
            if case:
                bundle = case.relabel(bundle)
        self.stopped = interrupted(bundle)
        return redacted(bundle, redact, paths)

    def report(self, bundle: EvidenceBundle, request: ReportRequest) -> Diagnosis:
        """Analyze a bundle (asking the questions that matter, when interactive) and write the report."""
        from diagnose.diagnosis import analyze
        from diagnose.report import engine_line, render

        if request.interactive and self.ask is not None:
            from diagnose.guide import guided

            bundle, diagnosis, _ = guided(bundle, self.rulebook, self.ask, self.engine)
        else:
            diagnosis = analyze(bundle, self.rulebook, self.engine)
        note("diagnose: " + engine_line(diagnosis).replace("Rule engine", "rule engine", 1))
        if request.save_evidence:
            bundle.save(request.save_evidence)
        for line in diagnosis.notes:
            note(f"diagnose: {line}")
        write_output(render(diagnosis, request.fmt, color=use_color(request.output), why=request.why), request.output)
        return diagnosis

    def finish(self, bundle: EvidenceBundle, request: ReportRequest) -> None:
        """Report, then end with the documented code: 130 when this session's collection was interrupted
        (the report covers what was gathered; a saved partial bundle analysed later is not), else 1 under
        --fail-on, 4 under --strict, or 0."""
        if self.stopped:
            note("diagnose: interrupted: reporting on the evidence gathered so far")
            request = replace(request, interactive=False)
        diagnosis = self.report(bundle, request)
        if self.stopped:
            leave_if_interrupted(bundle, request.save_evidence)
        end(*request.exit_code(diagnosis))
