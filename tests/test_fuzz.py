"""Every reader, fed a few hundred seeded mutations of real-format inputs (and gzip/zip wrappers,
damaged or not, and decompression bombs), gives no traceback, no hang, an exit code from the table,
valid JSON where it succeeds, and stays under 200 MB. See tests/fuzzing.py for what is checked.

`DIAGNOSE_FUZZ_CASES` (default 30 per reader) and `DIAGNOSE_FUZZ_SEED` change the run; a failing
case is kept in the test's temporary folder and its reproducing command is printed.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests import fuzzing
from tests.conftest import CORPUS

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="peak memory is read from Linux's wait4")

COUNT = int(os.environ.get("DIAGNOSE_FUZZ_CASES", "30"))
SEED = int(os.environ.get("DIAGNOSE_FUZZ_SEED", "20261206"))


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return fuzzing.seed_inputs(tmp_path_factory.mktemp("seeds"), CORPUS if CORPUS.is_dir() else None)


def _run_all(cases: list[fuzzing.Case], workdir: Path) -> list[fuzzing.Outcome]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda case: fuzzing.run_case(case, workdir), cases))


@pytest.mark.parametrize("reader", fuzzing.READERS)
def test_mutated_inputs(reader: str, seeds: dict[str, list[Path]], tmp_path: Path) -> None:
    assert seeds[reader], f"no seed input for {reader}"
    cases = list(fuzzing.cases(reader, COUNT, seeds[reader], tmp_path, SEED))
    outcomes = _run_all(cases, tmp_path)
    failures = [o.describe() for o in outcomes if o.problems]
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures)


def test_decompression_bombs(tmp_path: Path) -> None:
    outcomes = _run_all(list(fuzzing.bomb_cases(tmp_path)), tmp_path)
    failures = [o.describe() for o in outcomes if o.problems]
    assert not failures, "\n".join(failures)


def test_the_checks_catch_what_they_claim(tmp_path: Path) -> None:
    """The harness itself: a traceback, a bad exit code and a hang are each reported."""
    script = tmp_path / "evil.py"
    cases = {
        "traceback": "raise RuntimeError('boom')",
        "exit": "import sys; sys.exit(70)",
        "hang": "import time; time.sleep(60)",
        "memory": "block = b'x' * (300 << 20)",
        "orphan": "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])",
    }
    for name, body in cases.items():
        script.write_text(body)
        case = fuzzing.Case("logs", 0, script, (name,), script)
        outcome = fuzzing.run_script(script, case, tmp_path, timeout=3)
        assert outcome.problems, name


def test_the_peak_is_the_commands_own_not_the_test_runners(tmp_path: Path) -> None:
    """A command forked from a large process must not be charged with the parent's pages."""
    ballast = b"x" * (300 << 20)  # this process is now over the limit
    script = tmp_path / "quiet.py"
    script.write_text("print('ok')")
    case = fuzzing.Case("logs", 0, script, ("quiet",), script)
    outcome = fuzzing.run_script(script, case, tmp_path, timeout=10)
    assert len(ballast) and not outcome.problems and outcome.peak_mb < 100, outcome.describe()
