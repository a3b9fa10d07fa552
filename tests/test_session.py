"""The application layer: one exit-code table (diagnose/exitcodes.py) that README.md shows, and the
session's ways of ending a command (diagnose/session.py), each through the command line on real files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from diagnose import errors
from diagnose.exitcodes import ExitCode
from tests.conftest import REPO, busy_evidence, run_cli

SEED = REPO / "examples" / "seed"
DESIGN = REPO.parent / "shared" / "DESIGN.md"


def readme_exit_table() -> dict[int, str]:
    """The rows of the table under README.md's "### Exit codes": code -> meaning."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*(.+?)\s*\|\s*$", section, flags=re.M)
    return {int(code): meaning for code, meaning in rows}


def test_readme_shows_the_exit_code_table():
    table = readme_exit_table()
    assert sorted(table) == sorted(ExitCode)
    # each row says what its member is for
    words = {
        ExitCode.OK: "diagnosis done",
        ExitCode.FINDING: "--fail-on",
        ExitCode.USAGE: "usage error",
        ExitCode.RULES: "rule",
        ExitCode.INCOMPLETE: "--strict",
        ExitCode.INTERRUPTED: "interrupted",
    }
    for code, word in words.items():
        assert word in table[code], (code, table[code])


@pytest.mark.skipif(not DESIGN.is_file(), reason="../shared/DESIGN.md is not here")
def test_design_names_only_codes_of_the_table():
    text = DESIGN.read_text(encoding="utf-8")
    sentence = text.split("Exit codes in one table:", 1)[1].split("\n\n", 1)[0]
    named = {int(n) for n in re.findall(r"(?:^|[:,]\s*)(\d+)\s+[a-z]", sentence)}
    assert named and named <= set(ExitCode)


def test_every_error_takes_its_code_from_the_table():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.DiagnoseError)]
    assert len(classes) >= 7
    for cls in classes:
        assert isinstance(cls.exit_code, ExitCode), cls
    assert errors.OutputError.exit_code is ExitCode.USAGE and errors.RuleError.exit_code is ExitCode.RULES


def test_a_report_that_cannot_be_written_ends_with_2(tmp_path: Path):
    target = tmp_path / "no-such-folder" / "report.json"
    result = run_cli("run", "--example", "seed", "--no-input", "--format", "json", "-o", str(target))
    assert result.returncode == ExitCode.USAGE == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors_said = [line for line in result.stderr.splitlines() if line.startswith("diagnose: error:")]
    assert len(errors_said) == 1 and str(target) in errors_said[0], result.stderr
    assert not target.parent.exists()


def test_a_bundle_that_cannot_be_written_ends_with_2(tmp_path: Path):
    (tmp_path / "a-file").write_text("not a folder\n")
    target = tmp_path / "a-file" / "bundle.json"
    result = run_cli("collect", "--example", "seed", "-o", str(target))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"diagnose: error: {target}")
    assert (tmp_path / "a-file").read_text() == "not a folder\n"


def test_fail_on_ends_with_1_after_writing_the_report(tmp_path: Path):
    report = tmp_path / "report.json"
    result = run_cli(
        "run",
        "--example",
        "fba-stopped",
        "--no-input",
        "--format",
        "json",
        "-o",
        str(report),
        "--fail-on",
        "0.5",
        "--strict",
    )  # --fail-on is decided first
    assert result.returncode == ExitCode.FINDING == 1, result.stderr
    data = json.loads(report.read_text())
    assert data["verdict"] == "misconfiguration"
    top = data["causes"][0]
    assert top["certainty"] >= 0.5
    # a threshold above every cause's certainty: the run is not a finding
    above = min(1.0, round(top["certainty"] + 0.01, 2))
    assert run_cli("run", "--example", "fba-stopped", "--no-input", "--fail-on", str(above)).returncode == 0


def test_strict_ends_with_4_and_names_what_is_missing(tmp_path: Path):
    bundle = tmp_path / "b.json"
    assert run_cli("collect", "--example", "seed", "-o", str(bundle)).returncode == 0
    result = run_cli("analyze", str(bundle), "--no-input", "--strict")
    assert result.returncode == ExitCode.INCOMPLETE == 4, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("diagnose: evidence incomplete (--strict): ")
    incomplete = [p["check"] for p in json.loads(bundle.read_text())["probes"] if p["status"] != "complete"]
    assert incomplete and all(check in line for check in incomplete)


def test_a_partial_bundle_analysed_later_is_not_an_interrupt(tmp_path: Path):
    """Only the session that collected was interrupted: a saved bundle with interrupted checks is
    analysed like any other (0, or 4 under --strict), never 130."""
    bundle = tmp_path / "partial.json"
    saved = tmp_path / "seed.json"
    assert run_cli("collect", "--example", "seed", "-o", str(saved)).returncode == 0
    raw = json.loads(saved.read_text())
    raw["probes"][0]["status"] = "interrupted"
    bundle.write_text(json.dumps(raw))
    assert run_cli("analyze", str(bundle), "--no-input").returncode == 0
    strict = run_cli("analyze", str(bundle), "--no-input", "--strict")
    assert strict.returncode == 4 and "diagnose: interrupted" not in strict.stderr, strict.stderr


def test_ctrl_c_in_a_run_reports_what_was_gathered_then_ends_with_130(tmp_path: Path):
    """Ctrl-C while a check is still collecting: the report covers the evidence gathered so far, the
    partial bundle is saved, and 130 wins over --fail-on and --strict."""
    from tests.test_interrupt import _interrupt_at

    hanging = busy_evidence(tmp_path / "many-facts.json")
    report, bundle = tmp_path / "report.json", tmp_path / "partial.json"
    args = [
        "run",
        "--offline",
        "--profile",
        str(SEED / "profile.yaml"),
        "--log",
        str(SEED / "ISALOG_20110504_FWS_000.w3c"),
        "--evidence",
        str(hanging),
        "--no-input",
        "--progress",
        "--format",
        "json",
        "-o",
        str(report),
        "--save-evidence",
        str(bundle),
        "--fail-on",
        "-1",
        "--strict",
    ]
    code, output, left = _interrupt_at(args, ("tmg-logs", "complete"), 0.3, tmp_path)
    assert (code, left) == (ExitCode.INTERRUPTED, []), output
    assert "Traceback" not in output
    assert "diagnose: interrupted: reporting on the evidence gathered so far" in output
    assert f"partial bundle written to {bundle}" in output
    data = json.loads(report.read_text())
    status = {p["check"]: p["status"] for p in data["probes"]}
    assert status["recorded-evidence"] == "interrupted" and status["tmg-logs"] == "complete"
    saved = {p["check"]: p["status"] for p in json.loads(bundle.read_text())["probes"]}
    assert saved == status


@pytest.mark.parametrize("module", ["diagnose.session", "diagnose.diagnosis", "diagnose.cli.run", "diagnose.errors"])
def test_the_layers_import_on_their_own(module: str):
    """Each imports first in a fresh interpreter (the session and the command line import each other)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
