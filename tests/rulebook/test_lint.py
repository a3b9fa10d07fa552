"""`diagnose rules lint` on broken rule files: each mistake gets exit 3 and one line naming file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_cli

GOOD = """\
id: {id}
title: a good rule
status: stable
when:
  log: {{kind: log.status_summary, scope: all, status64_count: {{gt: 0}}}}
conclude:
  cause: dirty-close-by-design
  certainty: 0.3
  explain: "{{log.status64_count}} entries"
tests:
  - name: fires
    facts:
      - {{kind: log.status_summary, subject: all, attrs: {{scope: all, status64_count: 2}}}}
    expect: {{fires: true}}
  - name: silent
    facts:
      - {{kind: log.status_summary, subject: all, attrs: {{scope: all, status64_count: 0}}}}
    expect: {{fires: false}}
"""


def good(rule_id: str) -> str:
    return GOOD.format(id=rule_id)


# (case name, file name, text, expected line, words the message must contain)
CASES = [
    ("unknown key", "x1", good("x1").replace("title:", "titel:"), 2, "unknown key 'titel'"),
    (
        "duplicate key",
        "x2",
        good("x2").replace("status: stable\n", "status: stable\nstatus: test\n"),
        4,
        "duplicate key 'status'",
    ),
    ("bad operator", "x3", good("x3").replace("{gt: 0}", "{greater: 0}"), 5, "unknown operator 'greater'"),
    ("wrong value type", "x4", good("x4").replace("{gt: 0}", "{gt: many}"), 5, "expected a number"),
    (
        "string for an int field",
        "x5",
        good("x5").replace("status64_count: {gt: 0}}", 'status64_count: "3"}'),
        5,
        "is int",
    ),
    (
        "join to undefined binding",
        "x6",
        good("x6").replace("status64_count: {gt: 0}", 'status64_count: {gt: "$nope.records"}'),
        5,
        "undefined binding 'nope'",
    ),
    ("id differs from file name", "x7", good("other-id"), 1, "differs from the file name"),
    (
        "cause not in catalogue",
        "x8",
        good("x8").replace("cause: dirty-close-by-design", "cause: no-such-cause"),
        7,
        "not in the cause catalogue",
    ),
    (
        "stable rule without a silent test",
        "x9",
        good("x9").split("  - name: silent")[0],
        11,
        "needs at least one firing and one non-firing test",
    ),
    (
        "unknown fact kind",
        "x10",
        good("x10").replace("kind: log.status_summary, scope", "kind: log.summary, scope"),
        5,
        "unknown fact kind 'log.summary'",
    ),
    (
        "unknown attribute",
        "x11",
        good("x11").replace("status64_count: {gt: 0}", "status_64: {gt: 0}"),
        5,
        "has no attribute 'status_64'",
    ),
    ("certainty out of range", "x12", good("x12").replace("certainty: 0.3", "certainty: 1.5"), 8, "in [-1, 1]"),
    ("YAML syntax error", "x13", good("x13").replace("title: a good rule", "title: [unclosed"), 3, "YAML syntax"),
    (
        "YAML alias",
        "x14",
        good("x14")
        .replace("description", "d")
        .replace(
            "  log: {kind: log.status_summary, scope: all, status64_count: {gt: 0}}",
            "  log: &a {kind: log.status_summary, scope: all, status64_count: {gt: 0}}\n  other: *a",
        ),
        6,
        "anchors and aliases",
    ),
    (
        "explain names an unknown binding",
        "x15",
        good("x15").replace("{log.status64_count} entries", "{svc.state}"),
        9,
        "unknown binding 'svc'",
    ),
    ("bad status", "x16", good("x16").replace("status: stable", "status: done"), 3, "status must be one of"),
    (
        "contains on a number",
        "x17",
        good("x17").replace("{gt: 0}", "{contains: 5}"),
        5,
        "contains needs a string or list",
    ),
    (
        "fact in a test with a wrong type",
        "x18",
        good("x18").replace("status64_count: 2}", "status64_count: two}"),
        13,
        "is int, got str",
    ),
    (
        "explain reads a binding under not",
        "x19",
        good("x19")
        .replace(
            "status64_count: {gt: 0}}\n",
            "status64_count: {gt: 0}}\n  not:\n    svc: {kind: service.state, state: running}\n",
            1,
        )
        .replace("{log.status64_count} entries", "{svc.name} runs"),
        11,
        "'svc' is under `not` and never binds a fact",
    ),
    (
        "explain reads an alternative with no stand-in",
        "x20",
        good("x20").replace(
            "  log: {kind: log.status_summary, scope: all, status64_count: {gt: 0}}",
            "  any:\n    log: {kind: log.status_summary, scope: all, status64_count: {gt: 0}}\n"
            "    cap: {kind: capture.teardown_summary, scope: all, dirty_close: {gt: 0}}",
        ),
        11,
        "when the rule fires on cap, 'log' is not bound and no log.status_summary binding",
    ),
]


@pytest.mark.parametrize("case,name,text,line,words", CASES, ids=[c[0] for c in CASES])
def test_each_mistake_is_one_line_with_file_and_line(tmp_path: Path, case, name, text, line, words):
    path = tmp_path / "mine" / f"{name}.yaml"
    path.parent.mkdir()
    path.write_text(text, encoding="utf-8")
    result = run_cli("rules", "lint", str(tmp_path / "mine"))
    assert result.returncode == 3, (case, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, (case, result.stderr)
    assert lines[0].startswith(f"{path}:{line}:"), (case, lines[0])
    assert words in lines[0], (case, lines[0])
    assert "Traceback" not in result.stderr


def test_duplicate_ids_across_files(tmp_path: Path):
    for folder in ("a", "b"):
        (tmp_path / "mine" / folder).mkdir(parents=True)
        (tmp_path / "mine" / folder / "twin.yaml").write_text(good("twin"), encoding="utf-8")
    result = run_cli("rules", "lint", str(tmp_path / "mine"))
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "duplicate id 'twin'" in lines[0]
    assert lines[0].startswith(str(tmp_path / "mine" / "b" / "twin.yaml") + ":1:")


def test_shipped_rules_lint_clean_and_their_tests_pass():
    result = run_cli("rules", "lint")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("ok:")
    result = run_cli("rules", "test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failed" in result.stdout


def test_a_failing_inline_test_fails_rules_test(tmp_path: Path):
    text = good("wrong-expectation").replace("    expect: {fires: false}", "    expect: {fires: true}")
    text = text.replace("status: stable", "status: experimental")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "wrong-expectation.yaml").write_text(text, encoding="utf-8")
    result = run_cli("rules", "test", str(tmp_path / "mine"), "--rule", "wrong-expectation")
    assert result.returncode == 3
    assert "FAIL" in result.stdout and "expected to fire" in result.stdout
    assert "1 passed, 1 failed" in result.stdout


def test_new_rule_skeleton_lints_and_its_tests_run(tmp_path: Path):
    result = run_cli("rules", "new", "my-first-rule", "--dir", str(tmp_path / "mine"))
    assert result.returncode == 0, result.stderr
    assert run_cli("rules", "lint", str(tmp_path / "mine")).returncode == 0
    tested = run_cli("rules", "test", str(tmp_path / "mine"), "--rule", "my-first-rule")
    assert tested.returncode == 0 and "2 passed, 0 failed" in tested.stdout
    again = run_cli("rules", "new", "my-first-rule", "--dir", str(tmp_path / "mine"))
    assert again.returncode == 2 and "not overwriting" in again.stderr


def test_user_rule_overrides_shipped_rule_with_same_id(tmp_path: Path):
    mine = tmp_path / "mine"
    mine.mkdir()
    text = good("dirty-close-by-design").replace("certainty: 0.3", "certainty: 0.1")
    (mine / "dirty-close-by-design.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    listed = run_cli("rules", "list", "--rules", str(mine))
    line = next(x for x in listed.stdout.splitlines() if x.startswith("dirty-close-by-design "))
    assert "+0.10" in line
