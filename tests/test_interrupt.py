"""Ctrl-C during collection leaves a usable partial bundle, with the interrupted checks marked."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from tests.conftest import REPO, busy_evidence, run_cli

pexpect = pytest.importorskip("pexpect")
SEED = REPO / "examples" / "seed"


def test_ctrl_c_keeps_a_partial_bundle(tmp_path):
    hanging = busy_evidence(tmp_path / "many-facts.json")
    bundle = tmp_path / "partial.json"
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    child = pexpect.spawn(sys.executable, ["-m", "diagnose", "collect", "--offline", "--profile", str(SEED / "profile.yaml"),
                                           "--log", str(SEED / "ISALOG_20110504_FWS_000.w3c"), "--evidence",
                                           str(hanging), "-o", str(bundle), "--progress"],
                          cwd=str(REPO), env=env, encoding="utf-8", timeout=30)
    child.expect(r"tmg-logs\s+complete")
    time.sleep(0.3)
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    output = child.before or ""
    assert child.exitstatus == 130
    assert "Traceback" not in output
    assert f"partial bundle written to {bundle}" in output
    data = json.loads(bundle.read_text())
    status = {p["check"]: p["status"] for p in data["probes"]}
    assert status["recorded-evidence"] == "interrupted"
    assert status["tmg-logs"] == "complete"
    assert any(f["kind"] == "log.status_summary" for f in data["facts"])
    # the partial bundle is usable: it analyses, and says what is missing
    result = run_cli("analyze", str(bundle), "--format", "json", "--no-input")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["verdict"] in ("benign", "inconclusive")
    assert any(p["status"] == "interrupted" for p in report["probes"])
