"""Behaviour unchanged: the JSON of every bundled example (run and collect) and every corpus case, and the
rules test summary, equal their snapshots under tests/golden/ (normalised only for time stamps, durations,
the tool version, the engine chosen and absolute paths; see scripts/golden.py).

After an intended change: `python scripts/golden.py --update`, then review `git diff tests/golden`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent


def _golden() -> ModuleType:
    spec = importlib.util.spec_from_file_location("golden", REPO / "scripts" / "golden.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["golden"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


golden = _golden()


@pytest.mark.parametrize("case", golden.cases(), ids=lambda case: case.name)
def test_output_equals_its_snapshot(case: golden.Case) -> None:
    if case.needs_corpus and not golden.CORPUS.is_dir():
        pytest.skip("../shared/corpus is not present")
    diff = golden.difference(case)
    assert diff is None, diff


def test_every_snapshot_has_a_case() -> None:
    """A snapshot left behind by a removed example or corpus file is stale, not a check."""
    named = {case.name for case in golden.cases()} | {golden.WHEEL_FILES.name}
    stored = {path.name for path in golden.GOLDEN.iterdir()}
    if not golden.CORPUS.is_dir():
        stored = {name for name in stored if not name.startswith("corpus-")}
    assert stored <= named, f"snapshots without a case: {sorted(stored - named)}"


def test_normalising_keeps_what_the_case_found() -> None:
    """Only run-to-run variation is masked: a changed certainty or fact still differs."""
    one = {
        "created": "2026-01-01T00:00:00Z",
        "causes": [{"certainty": 0.9}],
        "facts": [{"provenance": {"time": "x", "source": str(REPO / "examples" / "seed" / "a.w3c")}}],
    }
    other = {**one, "created": "2027-02-02T00:00:00Z", "causes": [{"certainty": 0.8}]}
    assert golden.normalise(one)["created"] == golden.normalise(other)["created"]
    assert golden.normalise(one)["causes"] != golden.normalise(other)["causes"]
    assert golden.normalise(one)["facts"][0]["provenance"] == {"time": "<time>", "source": "<repo>/examples/seed/a.w3c"}
