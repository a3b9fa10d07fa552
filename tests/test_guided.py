"""A real guided session through a pseudo-terminal: the questions, `?`, and the answer's effect."""

from __future__ import annotations

import os
import sys

import pytest

from tests.conftest import REPO

pexpect = pytest.importorskip("pexpect")

SEED = REPO / "examples" / "seed"


def spawn(*args: str) -> pexpect.spawn:
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1", COLUMNS="120")
    return pexpect.spawn(
        sys.executable,
        ["-m", "diagnose", *args],
        cwd=str(REPO),
        env=env,
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 160),
    )


def test_guided_session_asks_what_matters_and_explains_why(tmp_path):
    saved = tmp_path / "bundle.json"
    child = spawn(
        "run",
        "--offline",
        "--profile",
        str(SEED / "profile.yaml"),
        "--log",
        str(SEED / "ISALOG_20110504_FWS_000.w3c"),
        "--capture",
        str(SEED / "netmon-trace.txt"),
        "--save-evidence",
        str(saved),
    )
    child.expect(r"Question 1: Are external users reporting failures.*\[yes/no, \? why, s skip\]: ")
    child.sendline("?")
    child.expect("Asked because the answer decides rule")
    child.expect(r"if yes: verdict inconclusive, top cause unexplained-user-impact")
    child.expect(r"if no: verdict benign, top cause dirty-close-by-design")
    child.expect(r"\[yes/no, \? why, s skip\]: ")
    child.sendline("maybe")
    child.expect("please answer one of: yes/no")
    child.sendline("n")
    child.expect("Verdict: BENIGN")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert '"users-report-failures": "no"' in saved.read_text()
    assert "Question 2" not in (child.before or "")


def test_guided_session_stops_cleanly_at_end_of_input():
    child = spawn(
        "run", "--offline", "--profile", str(SEED / "profile.yaml"), "--capture", str(SEED / "netmon-trace.txt")
    )
    child.expect(r"Question 1: ")
    child.sendeof()
    child.expect("Verdict: BENIGN")
    child.expect("Questions that could change this")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
