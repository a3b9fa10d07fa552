"""Where diagnose runs: Python 3.8 to 3.14, with or without a C compiler, Windows included.

The wheels are built with the real build backend (hatchling and hatch_build.py), without build
isolation so nothing is downloaded; "no compiler" is a PATH whose gcc/cc/clang exit 1 and CC=/bin/false.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tokenize
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from diagnose.compat import SLOTS, UTC, StrEnum, removeprefix, removesuffix, zip_strict
from diagnose.engine import durable_missing
from tests.conftest import REPO
from tests.test_wheel import _have

COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "x86_64-linux-gnu-gcc")


needs_backend = pytest.mark.skipif(
    not (_have("hatchling") and _have("setuptools")), reason="hatchling/setuptools not installed"
)


def build_wheel(out: Path, env: dict[str, str]) -> Path:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = out.glob("*.whl")
    return wheel


def no_compiler_env(tmp_path: Path) -> dict[str, str]:
    shims = tmp_path / "no-compiler"
    shims.mkdir()
    for name in COMPILERS:
        shim = shims / name
        shim.write_text("#!/bin/sh\necho 'no C compiler here' >&2\nexit 1\n")
        shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}",
        "CC": "/bin/false",
        "CXX": "/bin/false",
        "LDSHARED": "/bin/false",
    }
    env.pop("DIAGNOSE_PURE_PYTHON", None)
    return env


def metadata_of(wheel: Path) -> tuple[list[str], object]:
    archive = zipfile.ZipFile(wheel)
    name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    return archive.namelist(), Parser().parsestr(archive.read(name).decode("utf-8"))


@needs_backend
def test_without_a_compiler_the_wheel_is_pure_python_and_diagnoses(tmp_path: Path) -> None:
    env = no_compiler_env(tmp_path)
    probe = subprocess.run(["gcc", "--version"], env=env, capture_output=True, text=True)
    assert probe.returncode == 1  # the shim is what the build finds
    wheel = build_wheel(tmp_path / "dist", env)
    assert wheel.name.endswith("-py3-none-any.whl")
    names, _ = metadata_of(wheel)
    assert not [n for n in names if n.endswith((".so", ".pyd"))]
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
    for example, verdict, top in [
        ("seed", "benign", "dirty-close-by-design"),
        ("dns-mismatch", "misconfiguration", "name-resolution-mismatch"),
        ("fba-stopped", "misconfiguration", "exchange-fba-service-stopped"),
    ]:
        run = subprocess.run(
            [sys.executable, "-m", "diagnose", "run", "--example", example, "--format", "json"],
            cwd=elsewhere,
            env={**env, "PYTHONPATH": str(target)},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert run.returncode in (0, 1), run.stderr
        report = json.loads(run.stdout)
        assert (report["verdict"], report["causes"][0]["id"]) == (verdict, top)


@needs_backend
def test_the_pure_wheel_is_what_pipx_and_the_tmg_host_install(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist", {**os.environ, "DIAGNOSE_PURE_PYTHON": "1"})
    assert wheel.name == "tmg_diagnose-0.1.0-py3-none-any.whl"
    names, meta = metadata_of(wheel)
    assert not [n for n in names if n.endswith((".so", ".pyd"))]
    assert "diagnose/_data/rules/causes/dirty-close-by-design.yaml" in names
    assert any(n.endswith(".dist-info/entry_points.txt") for n in names)  # the `diagnose` command
    assert meta["Requires-Python"] == ">=3.8"
    classifiers = meta.get_all("Classifier")
    for version in ("3.8", "3.11", "3.13", "3.14"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    assert "Operating System :: Microsoft :: Windows" in classifiers
    requires = [re.sub(r"\s+", " ", r.replace("'", '"')) for r in meta.get_all("Requires-Dist")]
    assert any(r.startswith("tzdata") and 'sys_platform == "win32"' in r for r in requires)
    assert any(r.startswith("backports-zoneinfo") or r.startswith("backports.zoneinfo") for r in requires)
    assert any(r.startswith("durable-rules==2.0.28") and 'extra == "durable"' in r for r in requires)
    assert not any(r.startswith("durable-rules") and "extra" not in r for r in requires)  # never required
    # the TMG host (Windows Server 2008 R2) keeps a cryptography whose wheels load there
    assert any(r.startswith("cryptography") and "<=42.0.5" in r and "win32" in r for r in requires)
    readme = meta.get_payload()
    assert "## Install" in readme and "Windows Server 2008 R2" in readme
    links = re.findall(r"\]\(([^)]*)\)", readme)
    assert all(link.startswith(("https://", "http://")) for link in links), links  # valid on an index page


def test_durable_where_this_environment_should_have_it() -> None:
    """scripts/test.sh says where durable_rules is expected (3.11 and 3.13 with a compiler)."""
    if os.environ.get("DIAGNOSE_EXPECT_DURABLE") != "1":
        pytest.skip("durable_rules is not expected here")
    assert durable_missing() is None


def test_compat_names_behave_as_the_standard_ones() -> None:
    class Colour(StrEnum):
        RED = "red"

    assert str(Colour.RED) == "red" and f"{Colour.RED}" == "red" and f"{Colour.RED:>5}" == "  red"
    assert Colour("red") is Colour.RED and Colour.RED == "red"
    assert removeprefix("\\\\cas01", "\\\\") == "cas01" and removeprefix("cas01", "") == "cas01"
    assert removesuffix("sc.exe", ".exe") == "sc" and removesuffix(b"x.exe", b".exe") == b"x"
    assert list(zip_strict("ab", (1, 2))) == [("a", 1), ("b", 2)]
    if sys.version_info >= (3, 10):
        with pytest.raises(ValueError):
            list(zip_strict("ab", (1,)))
        assert SLOTS == {"slots": True}
    assert UTC.utcoffset(None).total_seconds() == 0


# 3.9+ library calls that ruff (target py38) does not flag and the 3.8 subset may not reach; each has
# its diagnose.compat spelling
NEWER_API = {
    r"\.removeprefix\(|\.removesuffix\(": "compat.removeprefix / removesuffix",
    r"\bzip\([^()]*(?:\([^()]*\)[^()]*)*\bstrict=True": "compat.zip_strict",
    r"slots=True": "**compat.SLOTS",
    r"\b(?:datetime|dt)\.UTC\b|from datetime import [^\n]*\bUTC\b": "compat.UTC",
    r"from enum import [^\n]*\bStrEnum\b": "compat.StrEnum",
    r"^\s*(?:from zoneinfo |import zoneinfo)": "compat.ZoneInfo",
    r"functools\.cache\b|from functools import [^\n]*\bcache\b": "functools.lru_cache(maxsize=None)",
    r"cancel_futures=": "compat.shutdown_cancelling",
    r"os\.waitstatus_to_exitcode": "compat.waitstatus_to_exitcode",
    r"isinstance\([^()]*,\s*[\w.]+\s*\|": "a tuple of types",
    r"\.write_text\([^()]*newline=": "write_bytes",
}


def _without_comments(source: str) -> str:
    lines = source.splitlines(keepends=True)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            (row, col), (_, end) = token.start, token.end
            lines[row - 1] = lines[row - 1][:col] + " " * (end - col) + lines[row - 1][end:]
    return "".join(lines)


def test_no_library_call_newer_than_python_38() -> None:
    found = []
    for folder in ("diagnose", "tests", "bench"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path.name == "compat.py" or path == Path(__file__):
                continue
            text = _without_comments(path.read_text(encoding="utf-8"))
            for pattern, instead in NEWER_API.items():
                for hit in re.finditer(pattern, text, re.MULTILINE):
                    line = text.count("\n", 0, hit.start()) + 1
                    found.append(f"{path.relative_to(REPO)}:{line}: {hit.group(0).strip()!r}: use {instead}")
    assert not found, "\n".join(found)


@needs_backend
def test_the_description_flattens_source_tree_links_only() -> None:
    sys.path.insert(0, str(REPO))
    try:
        from hatch_build import index_readme
    finally:
        sys.path.remove(str(REPO))
    text = (
        "![The report](docs/seed-report.png) see [Install](#install), [PR 403](https://github.com/jruizgit/"
        "rules/pull/403) and [the notes](../shared/knowledge/durable-rules-notes.md)"
    )
    assert index_readme(text) == (
        "*The report* (`docs/seed-report.png` in the source tree) see Install, "
        "[PR 403](https://github.com/jruizgit/rules/pull/403) and the notes"
    )
