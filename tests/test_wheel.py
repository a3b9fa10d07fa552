"""The built wheel, installed outside the checkout: it carries the rules, checks and examples, and the
compiled accelerators of the log scanner and the capture readers, and it runs a diagnosis from there.

The wheel is built with the real build backend (hatchling and the hook in hatch_build.py), without
build isolation so nothing is downloaded: the test extra brings hatchling and setuptools.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent


def _have(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _golden_module() -> ModuleType:
    from tests.test_golden import golden

    return golden


@pytest.mark.skipif(not (_have("hatchling") and _have("setuptools")), reason="hatchling/setuptools not installed")
def test_the_wheel_ships_data_and_the_accelerator(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = out.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "diagnose/_data/rules/causes/dirty-close-by-design.yaml" in names
    assert any(n.startswith("diagnose/_data/examples/seed/") for n in names)
    stems = (
        "diagnose/probes/logs/_fastscan",
        "diagnose/probes/capture/_fastcap",
        "diagnose/probes/proxylogs/_fastproxy",
    )
    built = {stem: [n for n in names if n.startswith(stem) and not n.endswith(".c")] for stem in stems}
    assert all(len(found) <= 1 for found in built.values()), built
    compiled = all(built.values())
    if os.environ.get("CI"):
        assert compiled, f"the wheel lacks a compiled accelerator: {built}"
    if compiled:
        assert "-none-any" not in wheel.name  # a platform wheel, not a pure one
        golden = _golden_module()
        expected = golden.WHEEL_FILES.read_text(encoding="utf-8").splitlines()
        assert golden.wheel_names(wheel) == expected, (
            f"the wheel's file list differs from tests/golden/{golden.WHEEL_FILES.name}; if intended: "
            f"`python scripts/golden.py --update --wheel`"
        )

    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("DIAGNOSE_PURE_PYTHON", None)
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import diagnose, diagnose.probes.logs.scan as s, diagnose.probes.capture.formats as f; "
            "import diagnose.probes.proxylogs.w3c as p; print(diagnose.__file__, s._fastscan, f._fastcap, p._fastproxy)",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(target))
    loaded = where.stdout.split(" ", 1)[1]
    assert ("_fastscan" in loaded and "_fastcap" in loaded and "_fastproxy" in loaded) == compiled
    run = subprocess.run(
        [sys.executable, "-m", "diagnose", "run", "--example", "seed", "--format", "json"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode in (0, 1), run.stderr
    report = json.loads(run.stdout)
    assert report["verdict"] and report["causes"][0]["id"] == "dirty-close-by-design"
