"""checks/thresholds.yaml: the log probes judge by its values, a copy in DIAGNOSE_CHECKS changes the
judgement with no Python change, and a bad file is one line naming file:line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnose.thresholds import THRESHOLDS_FILE, thresholds_path
from tests.conftest import run_cli
from tests.probes.capture.test_match import CAS, TMG, S, fw_row, write_w3c


def _status64_log(tmp_path: Path) -> Path:
    """One Status 64 entry a minute for ten minutes, then twelve in one minute (the median is 1)."""
    rows = [fw_row(S + 60 * m, f"{TMG}:{31000 + m}", f"{CAS}:443") for m in range(10)]
    rows += [fw_row(S + 600 + i, f"{TMG}:{32000 + i}", f"{CAS}:443") for i in range(12)]
    return write_w3c(tmp_path / "ISALOG_20240504_FWS_000.w3c", rows)


def _summary(log: Path, checks: Path | None = None) -> dict[str, object]:
    env = {"DIAGNOSE_CHECKS": str(checks)} if checks else None
    proc = run_cli("probe", "logs", str(log), "--tmg", TMG, "--format", "json", env=env)
    assert proc.returncode == 0, proc.stderr
    return next(f["attrs"] for f in json.loads(proc.stdout)["facts"] if f["attrs"]["scope"] == "all")


def _copy(tmp_path: Path, old: str, new: str) -> Path:
    text = thresholds_path().read_text(encoding="utf-8")
    assert old in text
    folder = tmp_path / "checks"
    folder.mkdir(exist_ok=True)
    (folder / THRESHOLDS_FILE).write_text(text.replace(old, new, 1), encoding="utf-8")
    return folder


def test_a_copy_of_the_thresholds_changes_the_judgement_without_python(tmp_path: Path) -> None:
    log = _status64_log(tmp_path)
    shipped = _summary(log)
    assert (shipped["bursts"], shipped["status64_peak_per_minute"], shipped["coincidence_window"]) == (1, 12, 60)
    text = thresholds_path().read_text(encoding="utf-8")
    floor = "  burst_floor:\n    value: 10\n"
    assert floor in text
    checks = _copy(tmp_path, floor, "  burst_floor:\n    value: 20\n")
    (checks / THRESHOLDS_FILE).write_text(
        (checks / THRESHOLDS_FILE)
        .read_text(encoding="utf-8")
        .replace("  coincidence_window_seconds:\n    value: 60\n", "  coincidence_window_seconds:\n    value: 30\n"),
        encoding="utf-8",
    )
    changed = _summary(log, checks)
    assert (changed["bursts"], changed["status64_peak_per_minute"], changed["coincidence_window"]) == (0, 12, 30)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("    value: 0.6\n", "    value: 1.5\n", "proxylogs.idle_min_share must be a number from 0.01 to 1, got 1.5"),
        ("    value: 10\n", "    value: ten\n", "logs.burst_floor must be a whole number from 1 to 1e+06, got 'ten'"),
        ("  burst_factor:\n", "  burst_factr:\n", "unknown threshold 'burst_factr' in logs"),
    ],
)
def test_a_bad_thresholds_file_is_one_line_with_file_and_line(tmp_path: Path, old: str, new: str, message: str) -> None:
    checks = _copy(tmp_path, old, new)
    text = (checks / THRESHOLDS_FILE).read_text(encoding="utf-8")
    line = text[: text.index(new)].count("\n") + 1
    proc = run_cli("probe", "logs", str(_status64_log(tmp_path)), env={"DIAGNOSE_CHECKS": str(checks)})
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"diagnose: error: {checks / THRESHOLDS_FILE}:{line}: {message}"), proc.stderr


def test_every_threshold_says_why() -> None:
    from diagnose.yamlio import load_yaml

    data, _lines = load_yaml(thresholds_path())
    entries = [entry for section in data.values() for entry in section.values()]
    assert len(entries) == 7 and all(len(entry["why"].split()) >= 10 for entry in entries)
