"""Typed probe parameters: a check's `params` are read into its probe's parameter class, so a misspelt key or
a wrong literal is an error naming the check file and line (through `diagnose rules lint` and `diagnose run`),
and the notes a probe writes reach the bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnose.collect import RunInputs, collect, default_check_dirs, load_checks
from diagnose.errors import RuleError
from diagnose.facts import load_bundle
from diagnose.probes import PARAMS, PROBES, params_class
from diagnose.profile import SiteProfile
from diagnose.safetext import markdown
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parent.parent


def _checks_dir(tmp_path: Path, body: str) -> Path:
    folder = tmp_path / "checks"
    folder.mkdir()
    (folder / "mine.yaml").write_text(body, encoding="utf-8")
    return folder


MISSPELT = """\
checks:
  - id: tmg-logs
    probe: logs
    title: TMG logs
    requires: [log_paths]
    params:
      paths: "{log_paths}"
      timezone: "{tz}"
"""


def test_every_probe_has_a_parameter_class():
    assert set(PARAMS) == set(PROBES)
    for name in PROBES:
        assert params_class(name).probe == name


def test_a_misspelt_key_is_a_lint_error_with_file_and_line(tmp_path: Path):
    folder = _checks_dir(tmp_path, MISSPELT)
    result = run_cli("rules", "lint", "--checks", str(folder))
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{folder / 'mine.yaml'}:8:")
    assert "unknown parameter 'timezone' for the logs probe" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_misspelt_key_stops_a_run_with_file_and_line(tmp_path: Path):
    folder = _checks_dir(tmp_path, MISSPELT)
    result = run_cli(
        "run",
        "--log",
        str(REPO / "examples" / "seed" / "ISALOG_20110504_FWS_000.w3c"),
        "--checks",
        str(folder),
        "--format",
        "json",
    )
    assert result.returncode == 3, result.stderr
    assert f"{folder / 'mine.yaml'}:8:" in result.stderr and "'timezone'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_literal_of_the_wrong_type_is_an_error_at_its_line(tmp_path: Path):
    folder = _checks_dir(
        tmp_path,
        """\
checks:
  - id: tcp-internal-443
    probe: tcp
    params:
      targets: "{internal_addresses}"
      port: seventy
""",
    )
    with pytest.raises(RuleError) as caught:
        load_checks([folder])
    assert str(caught.value).startswith(f"{folder / 'mine.yaml'}:6:")
    assert "'port' must be a port number" in str(caught.value)


def test_the_shipped_checks_lint_clean():
    assert {c.id for c in load_checks(default_check_dirs())} >= {"tmg-logs", "dns-names", "capture-teardown"}


def test_probe_warnings_reach_the_bundle_as_notes(tmp_path: Path):
    good = REPO / "examples" / "seed" / "ISALOG_20110504_FWS_000.w3c"
    missing = tmp_path / "not-there-*.w3c"  # a pattern that matches nothing: noted, not fatal
    checks = [c for c in load_checks(default_check_dirs()) if c.id == "tmg-logs"]
    bundle = collect(checks, SiteProfile(), RunInputs(log_paths=[str(good), str(missing)], offline=True))
    run = next(r for r in bundle.probes if r.check == "tmg-logs")
    assert any("not-there-*.w3c: no file matches" in note for note in run.notes), run
    saved = tmp_path / "bundle.json"
    saved.write_text(json.dumps(bundle.to_json()), encoding="utf-8")
    assert next(r for r in load_bundle(saved).probes if r.check == "tmg-logs").notes == run.notes
    # a bundle written before notes existed still loads
    old = bundle.to_json()
    for p in old["probes"]:
        p.pop("notes", None)
    saved.write_text(json.dumps(old), encoding="utf-8")
    assert all(r.notes == () for r in load_bundle(saved).probes)


@pytest.mark.parametrize(
    "fmt,shown",
    [
        ("text", "note: {glob}: no file matches"),
        ("markdown", "note: {md}"),
        ("html", "note: {glob}: no file matches"),
        ("json", '"notes": [\n    "{glob}: no file matches"'),
    ],
)
def test_notes_are_shown_in_every_report_format(tmp_path: Path, fmt: str, shown: str):
    pattern = str(tmp_path / "nothing-*.w3c")
    result = run_cli(
        "run",
        "--log",
        str(REPO / "examples" / "seed" / "ISALOG_20110504_FWS_000.w3c"),
        "--log",
        pattern,
        "--format",
        fmt,
    )
    assert result.returncode in (0, 1), result.stderr
    expected = shown.format(glob=pattern, md=markdown(f"{pattern}: no file matches"))
    assert expected in result.stdout.replace('"notes": [\n     "', '"notes": [\n    "')


def test_notes_are_redacted_with_the_bundle(tmp_path: Path):
    """A note quotes what the probe met (here an address in a path): `--redact` pseudonymises it as it does
    the reasons."""
    pattern = str(tmp_path / "from-10.1.4.98-*.w3c")
    bundle = tmp_path / "bundle.json"
    result = run_cli(
        "collect",
        "--log",
        str(REPO / "examples" / "seed" / "ISALOG_20110504_FWS_000.w3c"),
        "--log",
        pattern,
        "--offline",
        "--no-input",
        "--redact",
        "-o",
        str(bundle),
    )
    assert result.returncode == 0, result.stderr
    run = next(p for p in json.loads(bundle.read_text(encoding="utf-8"))["probes"] if p["check"] == "tmg-logs")
    assert len(run["notes"]) == 1 and "no file matches" in run["notes"][0]
    assert "10.1.4.98" not in run["notes"][0]
