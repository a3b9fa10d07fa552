"""Choosing the rule engine: --engine auto|durable|reference, DIAGNOSE_ENGINE, and auto; the choice
and its reason on stderr (one line) and in every report format. (Auto falling back where
durable_rules does not import is in test_worker.py, with a real failing import.)"""

from __future__ import annotations

import json

import pytest

from diagnose.engine import LABELS, choose_engine
from diagnose.errors import UsageError
from diagnose.safetext import markdown
from tests.conftest import run_cli
from tests.engine import timeless


def test_the_choice_and_its_reason(monkeypatch):
    monkeypatch.delenv("DIAGNOSE_ENGINE", raising=False)
    assert choose_engine().name == "durable" and choose_engine().reason == "auto: durable_rules imports here"
    assert choose_engine("reference").reason == "chosen with --engine"
    monkeypatch.setenv("DIAGNOSE_ENGINE", "reference")
    assert (choose_engine().name, choose_engine().reason) == ("reference", "DIAGNOSE_ENGINE=reference")
    assert choose_engine("durable").name == "durable"  # the option wins over the variable
    monkeypatch.setenv("DIAGNOSE_ENGINE", "drools")
    with pytest.raises(UsageError, match="DIAGNOSE_ENGINE must be one of auto, durable, reference, not 'drools'"):
        choose_engine()


@pytest.mark.parametrize(
    "engine,label,reason",
    [
        ("auto", "durable_rules", "auto: durable_rules imports here"),
        ("durable", "durable_rules", "chosen with --engine"),
        ("reference", "the reference evaluator", "chosen with --engine"),
    ],
)
def test_run_says_which_engine_ran_on_stderr_and_in_every_format(tmp_path, engine, label, reason):
    line = f"Rule engine: {label} ({reason})"
    reports = {}
    for fmt in ("text", "markdown", "html", "json"):
        out = tmp_path / f"report.{fmt}"
        result = run_cli("run", "--example", "fba-stopped", "--engine", engine, "--format", fmt, "-o", str(out))
        assert result.returncode == 0, result.stderr
        said = [line for line in result.stderr.splitlines() if "rule engine" in line]
        assert said == [f"diagnose: rule engine: {label} ({reason})"], result.stderr
        reports[fmt] = out.read_text(encoding="utf-8")
    assert reports["text"].rstrip().endswith(line)
    assert reports["markdown"].rstrip().endswith(f"_{markdown(line)}_")  # escaped as Markdown
    assert f"; {line}</p></body></html>" in reports["html"]
    data = json.loads(reports["json"])
    assert (data["engine"], data["engine_reason"]) == ({"auto": "durable"}.get(engine, engine), reason)
    assert data["verdict"] == "misconfiguration" and data["causes"][0]["id"] == "exchange-fba-service-stopped"


def test_analyze_takes_the_engine_from_the_environment(tmp_path):
    bundle = tmp_path / "dns.json"
    assert run_cli("collect", "--example", "dns-mismatch", "-o", str(bundle)).returncode == 0
    answers = {}
    for engine in ("durable", "reference"):
        out = tmp_path / f"{engine}.json"
        result = run_cli(
            "analyze", str(bundle), "--no-input", "--format", "json", "-o", str(out), env={"DIAGNOSE_ENGINE": engine}
        )
        assert result.returncode == 0, result.stderr
        assert f"diagnose: rule engine: {LABELS[engine]} (DIAGNOSE_ENGINE={engine})" in result.stderr.splitlines()
        data = json.loads(out.read_text(encoding="utf-8"))
        assert data.pop("engine") == engine and data.pop("engine_reason") == f"DIAGNOSE_ENGINE={engine}"
        answers[engine] = timeless(data)
    assert answers["durable"] == answers["reference"]  # the same diagnosis, whichever engine


def test_a_bad_engine_name_is_a_usage_error():
    result = run_cli("run", "--example", "seed", "--engine", "clips")
    assert result.returncode == 2 and "--engine" in result.stderr and "Traceback" not in result.stderr
