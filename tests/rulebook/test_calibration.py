"""rules/CALIBRATION.md says why each shipped rule has its certainty: one row per rule, no stale rows,
and each row's cause and certainty equal to the rule's (so a changed certainty needs a new reason)."""

from __future__ import annotations

import re

from diagnose.paths import data_dir
from diagnose.rulebook.loader import load_rulebook

ROW = re.compile(r"^\|\s*([a-z0-9][a-z0-9/-]*)\s*\|\s*([a-z0-9-]+)\s*\|\s*(-?[0-9.]+)\s*\|\s*(.+?)\s*\|\s*$")


def calibration_rows() -> dict[str, tuple[str, float, str]]:
    text = (data_dir("rules") / "CALIBRATION.md").read_text(encoding="utf-8")
    rows: dict[str, tuple[str, float, str]] = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if match:
            rule_id = match.group(1).rsplit("/", 1)[-1]  # "capture/dirty-close-by-design": folder for readers
            assert rule_id not in rows, f"{rule_id} has two rows"
            rows[rule_id] = (match.group(2), float(match.group(3)), match.group(4))
    return rows


def test_every_shipped_rule_has_one_calibration_row_that_matches_it() -> None:
    rulebook = load_rulebook([data_dir("rules")])
    rows = calibration_rows()
    shipped = {r.id: r for r in rulebook.rules}
    assert sorted(set(shipped) - set(rows)) == [], "rules without a row in rules/CALIBRATION.md"
    assert sorted(set(rows) - set(shipped)) == [], "rows in rules/CALIBRATION.md for rules that do not exist"
    for rule_id, (cause, certainty, why) in rows.items():
        rule = shipped[rule_id]
        assert (cause, certainty) == (rule.conclude.cause, rule.conclude.certainty), rule_id
        assert len(why) >= 20, f"{rule_id}: say why"
