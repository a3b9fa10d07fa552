"""Build small rulebooks in a temporary folder for tests: real YAML files through the real loader."""

from __future__ import annotations

import textwrap
from pathlib import Path

from diagnose.rulebook.loader import load_rulebook
from diagnose.rulebook.model import Rulebook

CAUSE = """\
id: {id}
verdict: {verdict}
title: Test cause {id}
remediation: [nothing]
"""


def write_rules(root: Path, rules: dict[str, str], causes: dict[str, str] | None = None) -> Path:
    """Write `rules` ({id: yaml body}) under root/rules/t/ and causes under root/rules/causes/."""
    base = root / "rules"
    (base / "t").mkdir(parents=True, exist_ok=True)
    (base / "causes").mkdir(parents=True, exist_ok=True)
    for rule_id, body in rules.items():
        (base / "t" / f"{rule_id}.yaml").write_text(textwrap.dedent(body), encoding="utf-8")
    for cause_id, verdict in (causes or {"c1": "fault"}).items():
        (base / "causes" / f"{cause_id}.yaml").write_text(CAUSE.format(id=cause_id, verdict=verdict), encoding="utf-8")
    return base


def rulebook(root: Path, rules: dict[str, str], causes: dict[str, str] | None = None) -> Rulebook:
    return load_rulebook([write_rules(root, rules, causes)])
