"""`diagnose rules lint` across rules, checks, fact kinds and catalogues: small rule bases in tmp dirs,
each finding one `file:line: severity: message` line; only errors fail, unless --strict."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import run_cli
from tests.rulebook.test_lint import good

CAUSE = """\
id: {id}
verdict: fault
title: A cause nobody concludes
description: Written for the test.
remediation: [Nothing.]
references: []
"""
QUESTION = 'id: {id}\ntext: Is it so?\nchoices: ["yes", "no"]\n'


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _lines(text: str, severity: str) -> list[str]:
    return [line for line in text.splitlines() if f": {severity}: " in line]


def _lint_rule_with(tmp_path: Path, rule_id: str, bindings: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Lint a good rule given more bindings (from line 6 on); the lint passes (warnings only)."""
    first = "  log: {kind: log.status_summary, scope: all, status64_count: {gt: 0}}\n"
    rule = _write(tmp_path / "mine" / f"{rule_id}.yaml", good(rule_id).replace(first, first + bindings))
    proc = run_cli("rules", "lint", str(tmp_path / "mine"))
    assert proc.returncode == 0, proc.stderr
    return rule, proc


def test_the_shipped_rule_base_has_no_errors_nor_warnings() -> None:
    proc = run_cli("rules", "lint", "--strict")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].endswith("; 0 errors, 0 warnings, 2 info")
    assert "capture.packets' is read by no rule" in proc.stdout


def test_an_unconcluded_cause_and_an_unasked_question_warn_and_strict_fails(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    cause = _write(mine / "causes" / "orphan-cause.yaml", CAUSE.format(id="orphan-cause"))
    question = _write(mine / "questions" / "orphan-question.yaml", QUESTION.format(id="orphan-question"))
    proc = run_cli("rules", "lint", str(mine))
    assert proc.returncode == 0, proc.stderr
    assert _lines(proc.stdout, "warning") == [
        f"{cause}:1: warning: cause 'orphan-cause' is concluded by no rule",
        f"{question}:1: warning: question 'orphan-question' is asked by no rule (no rule reads its answer)",
    ]
    assert proc.stdout.splitlines()[-1].startswith("ok: ") and "0 errors, 2 warnings" in proc.stdout
    strict = run_cli("rules", "lint", str(mine), "--strict")
    assert strict.returncode == 3 and strict.stdout.splitlines()[-1].startswith("failed: ")


def test_a_rule_reading_a_kind_no_check_produces_warns_with_its_line(tmp_path: Path) -> None:
    rule, proc = _lint_rule_with(tmp_path, "reads-packets", "  pkt: {kind: capture.packets}\n")
    assert _lines(proc.stdout, "warning") == [
        f"{rule}:6: warning: rule 'reads-packets' reads 'capture.packets', which no check produces "
        "(no check lists it in its kinds; probe 'capture' makes it)"
    ]
    assert "capture.packets' is read by no rule" not in proc.stdout  # read now: no info line


def test_answers_to_unknown_questions_and_choices_warn(tmp_path: Path) -> None:
    rule, proc = _lint_rule_with(
        tmp_path,
        "asks",
        "  a: {kind: answer, subject: affected-clients, value: {in: [owa, smtp]}}\n"
        '  b: {kind: answer, subject: no-such-question, value: "yes"}\n',
    )
    assert _lines(proc.stdout, "warning") == [
        f"{rule}:6: warning: rule 'asks' reads answer 'smtp' to 'affected-clients', which is not one of its "
        "choices (owa, outlook-anywhere, activesync, all, none)",
        f"{rule}:7: warning: rule 'asks' reads the answer to 'no-such-question', which is not a question",
    ]


def test_checks_listing_an_undeclared_kind_fail_and_another_probes_kind_warns(tmp_path: Path) -> None:
    checks = _write(
        tmp_path / "checks" / "mine.yaml",
        """\
checks:
  - id: tcp-internal-443
    probe: tcp
    kinds: [tcp.reachability, tls.certificate]
  - id: my-check
    probe: dns
    kinds: [dns.resolutions]
""",
    )
    proc = run_cli("rules", "lint", "--checks", str(checks.parent))
    assert proc.returncode == 3
    assert _lines(proc.stderr, "error") == [
        f"{checks}:5: error: check 'my-check' lists fact kind 'dns.resolutions', which is not declared "
        "(diagnose/factkinds/*.yaml)"
    ]
    assert _lines(proc.stdout, "warning") == [
        f"{checks}:2: warning: check 'tcp-internal-443' runs probe 'tcp' but lists 'tls.certificate', which "
        "probe 'tls' produces"
    ]
    assert proc.stdout.splitlines()[-1].startswith("failed: ") and "1 error, 1 warning" in proc.stdout


def test_a_bad_check_file_or_endpoint_table_is_an_error_line(tmp_path: Path) -> None:
    checks = _write(tmp_path / "checks" / "mine.yaml", "checks:\n  - id: x\n    probe: nosuch\n")
    proc = run_cli("rules", "lint", "--checks", str(checks.parent))
    assert proc.returncode == 3 and f"{checks}:3: error: unknown probe 'nosuch'" in proc.stderr
    table = _write(tmp_path / "table" / "exchange-endpoints.yaml", "protocols: {}\n")
    limits = _write(tmp_path / "table" / "thresholds.yaml", "logs: []\n")
    proc = run_cli("rules", "lint", env={"DIAGNOSE_CHECKS": str(table.parent)})
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert _lines(proc.stderr, "error") == [
        f"{table}:1: error: missing 'versions'",
        f"{limits}:1: error: logs is a mapping of thresholds",
    ]


def test_a_rule_error_keeps_its_one_line_with_the_severity(tmp_path: Path) -> None:
    rule = _write(tmp_path / "mine" / "x11.yaml", good("x11").replace("status64_count: {gt: 0}", "status_64: {gt: 0}"))
    proc = run_cli("rules", "lint", str(tmp_path / "mine"))
    assert proc.returncode == 3
    assert proc.stderr.strip() == f"{rule}:5: error: log.status_summary has no attribute 'status_64'"


def test_profile_values_the_endpoint_table_does_not_know_warn(tmp_path: Path) -> None:
    rule, proc = _lint_rule_with(
        tmp_path,
        "site-typos",
        '  site: {kind: site.profile, exchange_version: {in: ["2010", "2011"]}, published: {contains: owa2}}\n',
    )
    known = "2007, 2010, 2013, 2016, 2019, SE"
    assert _lines(proc.stdout, "warning") == [
        f"{rule}:6: warning: rule 'site-typos' compares site.profile.exchange_version with '2011', which the "
        f"endpoint table does not know ({known})",
        f"{rule}:6: warning: rule 'site-typos' compares site.profile.published with 'owa2', which the endpoint "
        "table does not know (owa, ecp, outlook-anywhere, activesync, ews, autodiscover)",
    ]


def test_a_fact_kind_naming_no_probe_warns_with_its_line(tmp_path: Path) -> None:
    from diagnose.kinds import fact_kinds
    from diagnose.probes import PROBES
    from diagnose.rulebook.lint import lint
    from diagnose.rulebook.loader import load_rulebook
    from diagnose.rulebook.model import Rulebook

    declared = _write(
        tmp_path / "kinds" / "mine.yaml",
        "# mine\nweb.answer:\n  probe: web\n  attributes: {code: int}\ntcp.reachability:\n  probe: tcp\n",
    )
    kinds = fact_kinds(declared.parent)
    rulebook = Rulebook((), load_rulebook([tmp_path / "none"], kinds).causes)
    findings = [str(f) for f in lint(rulebook, kinds, [], PROBES, {}, declared.parent)]
    assert findings == [
        f"{declared}:2: warning: fact kind 'web.answer' names probe 'web', which is not a probe",
        f"{declared}:2: info: fact kind 'web.answer' is read by no rule",
        f"{declared}:5: info: fact kind 'tcp.reachability' is read by no rule",
    ]
