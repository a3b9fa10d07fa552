"""Build a durable_rules 2.0.28 wheel that imports on Python 3.13 and later.

durable-rules 2.0.28 (2020, the last release) is published as source only, and its C glue calls
PyEval_CallObject, which Python 3.13 removed: the module builds with warnings (errors with gcc 14,
clang 16 or MSVC) and then fails to import. Upstream merged the one-line fix, PyEval_CallObject ->
PyObject_CallObject (jruizgit/rules PR #403), but never released it. This script applies exactly that
substitution to the pinned sdist and builds a wheel; it needs a C compiler and the network (PyPI),
once, at setup time. At run time nothing is downloaded.

    python scripts/build_durable.py [--dest DIR]     # prints the wheel's path
    pip install --find-links DIR 'tmg-diagnose[durable]'

It works on any Python 3.8+ (PyObject_CallObject has always existed); scripts/setup.sh uses it on
3.13 and later only, where the unpatched sdist does not import.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

VERSION = "2.0.28"
SDIST = f"durable_rules-{VERSION}.tar.gz"
SDIST_SHA256 = "053b26f5e48d312d4fa27995243f954671be6eece477f150c059c364eb4d7d61"
GLUE = "src/rulespy/rules.c"
REMOVED, REPLACEMENT = "PyEval_CallObject(", "PyObject_CallObject("
CALL_SITES = 5


class BuildError(Exception):
    pass


def download(into: Path) -> Path:
    """The pinned sdist from the package index, checked against its known digest."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"durable-rules=={VERSION}",
            "--dest",
            str(into),
        ],
        check=True,
    )
    sdist = into / SDIST
    if not sdist.is_file():
        raise BuildError(f"pip download did not leave {SDIST} in {into}")
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise BuildError(f"{sdist}: sha256 {digest}, expected {SDIST_SHA256}; not building from it")
    return sdist


def unpack(sdist: Path, into: Path) -> Path:
    """Extract the sdist (regular files and folders only, every path inside its own folder)."""
    top = f"durable_rules-{VERSION}"
    with tarfile.open(sdist) as tar:
        members = tar.getmembers()
        for member in members:
            path = PurePosixPath(member.name)
            inside = not path.is_absolute() and ".." not in path.parts and path.parts[0] == top
            if not inside or not (member.isfile() or member.isdir()):
                raise BuildError(f"{sdist}: unexpected member {member.name!r}")
        if hasattr(tarfile, "data_filter"):  # 3.12, and security releases of 3.8 to 3.11
            tar.extractall(into, members=members, filter="data")
        else:
            tar.extractall(into, members=members)
    return into / top


def patch(source: Path) -> None:
    """PyEval_CallObject -> PyObject_CallObject at its five call sites (upstream PR #403)."""
    glue = source / GLUE
    text = glue.read_text(encoding="utf-8")
    found = text.count(REMOVED)
    if found != CALL_SITES:
        raise BuildError(f"{glue}: {found} calls of {REMOVED[:-1]}, expected {CALL_SITES}; is this 2.0.28?")
    glue.write_text(text.replace(REMOVED, REPLACEMENT), encoding="utf-8")


def build(source: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.glob("durable_rules-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(dest), str(source)],
        check=True,
    )
    built = sorted(set(dest.glob(f"durable_rules-{VERSION}-*.whl")) - before) or sorted(
        dest.glob(f"durable_rules-{VERSION}-*.whl")
    )
    if not built:
        raise BuildError(f"pip wheel left no durable_rules wheel in {dest}")
    return built[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dest", type=Path, default=Path("wheelhouse"), help="folder for the wheel (wheelhouse)")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="durable-build-") as work:
            source = unpack(download(Path(work)), Path(work))
            patch(source)
            wheel = build(source, args.dest.resolve())
    except (BuildError, subprocess.CalledProcessError, OSError, tarfile.TarError) as exc:
        print(f"build_durable: {exc}", file=sys.stderr)
        return 1
    print(wheel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
