"""Output on a console or redirect in a Windows code page (PYTHONIOENCODING stands in for the ANSI or
OEM code page a Windows redirect writes in): reports with the rule words ≥ ≤ ≠ and logs with
non-Latin computer and user names are written, the unencodable characters spelled or replaced,
never a UnicodeEncodeError."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from diagnose.cli.console import HANDLER
from tests.conftest import REPO

SEED_LOG = REPO / "examples" / "seed" / "ISALOG_20110504_FWS_000.w3c"
COMPUTER, USER = "服务器-TMG", "КОНТОСО\\пользователь"


def run_encoded(encoding: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": encoding, "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "diagnose", *args], capture_output=True, cwd=REPO, env=env, timeout=180
    )


@pytest.mark.parametrize("example", ["seed", "fba-stopped"])
def test_rule_words_reach_a_cp1252_redirect_spelled_in_ascii(example: str) -> None:
    result = run_encoded("cp1252", "run", "--example", example, "--why")
    assert result.returncode == 0, result.stderr.decode("cp1252", "replace")
    text = result.stdout.decode("cp1252")  # valid cp1252 throughout
    assert text.startswith("Verdict: ")
    assert ">= " in text  # a silent rule's failed test `x ≥ n`, spelled for the code page
    assert "\\u2265" not in text and "≥" not in text


def _log_with_names(tmp_path: Path) -> Path:
    lines = SEED_LOG.read_text(encoding="utf-8").splitlines(keepends=True)
    out = [line if line.startswith("#") else line.replace("TMG01\t", f"{COMPUTER}\t", 1) for line in lines]
    out = [line.replace("\t-\t-\t0\t17202", f"\t{USER}\t-\t0\t17202") for line in out]
    log = tmp_path / "ISALOG_20110504_FWS_000.w3c"
    log.write_text("".join(out), encoding="utf-8")
    return log


@pytest.mark.parametrize("encoding", ["cp1252", "cp850"])
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_non_latin_computer_and_user_names_in_a_legacy_code_page(tmp_path: Path, encoding: str, fmt: str) -> None:
    log = _log_with_names(tmp_path)
    result = run_encoded(encoding, "probe", "logs", str(log), "--format", fmt)
    assert result.returncode == 0, result.stderr.decode(encoding, "replace")
    text = result.stdout.decode(encoding)
    assert "?" * 3 + "-TMG" in text  # the name is there, its Chinese characters replaced


@pytest.mark.parametrize("encoding", ["utf-8", "cp936"])  # cp936 (zh-CN) has both scripts
def test_a_code_page_that_has_the_names_keeps_them(tmp_path: Path, encoding: str) -> None:
    result = run_encoded(encoding, "probe", "logs", str(_log_with_names(tmp_path)))
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode(encoding)
    assert COMPUTER in text and USER in text


def test_the_handler_spells_rule_symbols_and_replaces_the_rest() -> None:
    assert "a ≥ 1, b ≠ 2 … 服务器".encode("cp1252", HANDLER) == b"a >= 1, b != 2 \x85 ???"  # cp1252 has the ellipsis
    assert "a ≤ 1 …".encode("ascii", HANDLER) == b"a <= 1 ..."
