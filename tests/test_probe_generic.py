"""`diagnose probe NAME` for a probe with no command of its own: the probe table and the parameter class
are all a new probe needs; the command line follows (issue 14: a new probe without touching the CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from diagnose.cli import main
from diagnose.facts import Fact, Provenance
from diagnose.probes import PARAMS, PROBES, ProbeContext, ProbeResult
from diagnose.probes.params import ProbeParams
from tests.conftest import REPO

EVIDENCE = REPO / "examples" / "dns-mismatch" / "evidence.json"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "diagnose", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )


def test_a_probe_without_its_own_command_runs_through_its_check(tmp_path: Path) -> None:
    """`probe evidence` has no command module: the generic one runs the catalogue's check and prints the
    facts `collect` puts in a bundle for the same file."""
    done = cli("probe", "evidence", "--param", f"paths={EVIDENCE}", "--format", "json")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["schema"] == "diagnose.probe/1" and printed["probe"]["check"] == "recorded-evidence"
    bundle = tmp_path / "bundle.json"
    collected = cli("collect", "--evidence", str(EVIDENCE), "--offline", "-o", str(bundle))
    assert collected.returncode == 0, collected.stderr

    def key(f: dict[str, Any]) -> str:
        return json.dumps([f["kind"], f["subject"], f["attrs"]], sort_keys=True)

    recorded = sorted(key(f) for f in json.loads(EVIDENCE.read_text())["facts"])
    assert recorded and sorted(key(f) for f in printed["facts"]) == recorded
    assert set(recorded) <= {key(f) for f in json.loads(bundle.read_text())["facts"]}


def test_an_unknown_parameter_or_a_bad_pair_is_one_error_line() -> None:
    done = cli("probe", "evidence", "--param", "pathz=x")
    assert done.returncode == 2 and done.stderr.strip() == (
        "diagnose: error: unknown parameter 'pathz' for the evidence probe (known: paths)"
    )
    done = cli("probe", "evidence", "--param", "paths")
    assert done.returncode == 2 and done.stderr.strip() == "diagnose: error: --param takes KEY=VALUE, got 'paths'"


# A probe written for this test, in its own module as any new probe would be: it reads the files it is
# given and says how many lines each has.
@dataclass(frozen=True)
class LineCountParams(ProbeParams):
    probe = "linecount"
    paths: tuple[str, ...] = ()
    label: str = "lines"


def linecount(ctx: ProbeContext, spec: LineCountParams | Mapping[str, Any]) -> ProbeResult:
    params = LineCountParams.of(spec)
    facts = tuple(
        Fact(
            "test.line_count",
            path,
            {params.label: len(Path(path).read_text().splitlines())},
            Provenance("linecount", ctx.check, path),
        )
        for path in params.paths
    )
    return ProbeResult(facts)


def test_a_new_probe_in_the_table_is_a_command_with_no_cli_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(PROBES, "linecount", f"{__name__}:linecount")
    monkeypatch.setitem(PARAMS, "linecount", f"{__name__}:LineCountParams")
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text("a\nb\nc\n")
    two.write_text("x\n")
    runner = CliRunner()
    listed = runner.invoke(main, ["probe", "--help"])
    assert "linecount" in listed.output
    done = runner.invoke(
        main,
        ["probe", "linecount", "-p", f"paths={one}", "-p", f"paths={two}", "-p", "label=count", "--format", "json"],
    )
    assert done.exit_code == 0, done.output
    printed = json.loads(done.output)
    assert printed["probe"]["status"] == "complete"
    assert [(f["subject"], f["attrs"]) for f in printed["facts"]] == [
        (str(one), {"count": 3}),
        (str(two), {"count": 1}),
    ]
    done = runner.invoke(main, ["probe", "linecount", "-p", "colour=blue"])
    assert done.exit_code == 2 and "unknown parameter 'colour' for the linecount probe" in done.output
