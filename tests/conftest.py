"""Shared test helpers. Tests run the real CLI in a subprocess, the way a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Network probes in tests (and the CLI they start) may reach loopback only; see diagnose/probes/netio.py.
os.environ["DIAGNOSE_NETWORK"] = "loopback"

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"


def run_cli(
    *args: str,
    input: str | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m diagnose ARGS` from this checkout; returns the completed process (text)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.setdefault("NO_COLOR", "1")
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "diagnose", *args],
        capture_output=True,
        text=True,
        input=input,
        cwd=cwd or REPO,
        timeout=timeout,
        env=full_env,
    )


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is not present")
    return CORPUS


def busy_evidence(path: Path) -> Path:
    """A recorded-evidence file that keeps its probe busy for seconds (240,000 facts, near the bound of
    a bundle): a probe still running when Ctrl-C comes. A FIFO nobody writes, used before, is now
    refused before it is opened."""
    fact = '{"kind": "dns.resolution", "subject": "n", "attrs": {"name": "n"}}'
    path.write_text('{"facts": [' + ", ".join([fact] * 240_000) + "]}")
    return path
