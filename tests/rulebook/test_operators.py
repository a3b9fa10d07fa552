"""The operator table: one definition that the loader, both engines, the CLI and the README agree on."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnose.rulebook import model
from diagnose.rulebook.operators import MISSING, holds
from diagnose.rulebook.operators import OPERATORS as TABLE
from tests.conftest import REPO, run_cli
from tests.rulebook.test_lint import good


def test_rules_operators_prints_the_table_and_the_readme_names_every_operator() -> None:
    proc = run_cli("rules", "operators")
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[0] for line in proc.stdout.splitlines()[1:]]
    assert listed == list(model.OPERATORS) == list(TABLE)
    assert '{"$iany": {"f": {"$i": "a"}}}' in proc.stdout  # contains on a list field
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("Operators: ") : readme.index("diagnose rules operators")]
    assert all(f"`{name}`" in section for name in TABLE)


@pytest.mark.parametrize(
    ("op", "value", "operand", "expected"),
    [
        ("eq", 1, 1.0, True),
        ("eq", True, 1, False),
        ("ne", "a", "b", True),
        ("ne", 1, "1", False),
        ("lt", 1, 2, True),
        ("ge", "b", "a", False),
        ("in", 2, (1, 2.0), True),
        ("in", True, (1,), False),
        ("contains", "MSExchangeFBA", "FBA", True),
        ("contains", ("a", 1), 1, True),
        ("contains", ("a",), "b", False),
        ("matches", "CAS01.contoso.local", "cas0?.*", True),
        ("matches", "cas01", "cas", False),
        ("exists", MISSING, False, True),
        ("exists", 0, True, True),
        ("eq", MISSING, 1, False),
    ],
)
def test_the_table_gives_the_rule_languages_meaning(op: str, value: object, operand: object, expected: bool) -> None:
    assert holds(op, value, operand) is expected
    assert model.Test("f", op, operand).describe().startswith("f ")


def test_a_join_with_an_operator_the_table_does_not_allow_is_refused(tmp_path: Path) -> None:
    text = good("j1").replace("status64_count: {gt: 0}", 'status64_count: {in: "$log.records"}')
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "j1.yaml").write_text(text, encoding="utf-8")
    proc = run_cli("rules", "lint", str(tmp_path / "mine"))
    assert proc.returncode == 3
    assert (
        "in on status64_count takes a literal; joins compare scalar fields with eq, ne, lt, le, gt or ge" in proc.stderr
    )
