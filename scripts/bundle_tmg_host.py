"""Gather every wheel diagnose needs on the TMG host (Windows Server 2008 R2, 64-bit CPython 3.8) into
one folder, to copy there and install without internet:

    python scripts/bundle_tmg_host.py dist/tmg_diagnose-0.1.0-py3-none-any.whl --dest tmg-bundle
    (on the TMG host)  py -3.8 -m pip install --no-index --find-links tmg-bundle tmg-diagnose

`pip download --platform win_amd64 --python-version 3.8 --only-binary=:all:` picks wheels for that
platform, but it evaluates environment markers for the machine it runs on: from Linux it would leave
out tzdata, colorama (click's, on Windows) and backports.zoneinfo, and take a cryptography that does
not load on Windows Server 2008 R2. So this script walks the dependencies itself: each wheel's
Requires-Dist is evaluated for Windows and Python 3.8, and each requirement is fetched with
`pip download --no-deps` for that platform, until nothing new is required.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

TARGET = {  # a 64-bit CPython 3.8.10 (the last 3.8 with a Windows installer) on Windows Server 2008 R2
    "implementation_name": "cpython",
    "implementation_version": "3.8.10",
    "os_name": "nt",
    "platform_machine": "AMD64",
    "platform_release": "2008ServerR2",
    "platform_system": "Windows",
    "platform_version": "6.1.7601",
    "python_full_version": "3.8.10",
    "platform_python_implementation": "CPython",
    "python_version": "3.8",
    "sys_platform": "win32",
}
PIP_TARGET = [
    "--only-binary=:all:",
    "--platform",
    "win_amd64",
    "--python-version",
    "3.8",
    "--implementation",
    "cp",
    "--abi",
    "cp38",
    "--abi",
    "abi3",
    "--abi",
    "none",
]


def requirements_of(wheel: Path, extras: frozenset[str] = frozenset()) -> list[Requirement]:
    """The wheel's Requires-Dist that apply on the TMG host (with the given extras)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode("utf-8"))
    out = []
    for text in metadata.get_all("Requires-Dist") or []:
        req = Requirement(text)
        wanted = ["", *sorted(extras)]
        if req.marker is None or any(req.marker.evaluate({**TARGET, "extra": extra}) for extra in wanted):
            req.marker = None
            out.append(req)
    return out


def fetch(req: Requirement, dest: Path) -> Path:
    before = set(dest.glob("*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *PIP_TARGET, "--dest", str(dest), str(req)],
        check=True,
    )
    name = canonicalize_name(req.name)
    candidates = [
        w
        for w in set(dest.glob("*.whl")) - before or dest.glob("*.whl")
        if parse_wheel_filename(w.name)[0] == name and parse_wheel_filename(w.name)[1] in req.specifier
    ]
    if not candidates:
        raise SystemExit(f"bundle_tmg_host: no wheel of {req} for win_amd64 / CPython 3.8")
    return max(candidates, key=lambda w: parse_wheel_filename(w.name)[1])


def bundle(root_wheel: Path, dest: Path) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / root_wheel.name
    if root_wheel.resolve() != target.resolve():
        target.write_bytes(root_wheel.read_bytes())
    chosen: dict[str, Path] = {canonicalize_name(parse_wheel_filename(root_wheel.name)[0]): target}
    todo = requirements_of(target)
    while todo:
        req = todo.pop(0)
        name = canonicalize_name(req.name)
        have = chosen.get(name)
        if have is not None and parse_wheel_filename(have.name)[1] in req.specifier:
            continue
        wheel = fetch(req, dest)
        chosen[name] = wheel
        todo.extend(requirements_of(wheel, frozenset(req.extras)))
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Wheels for the TMG host (win_amd64, CPython 3.8) in one folder")
    parser.add_argument("wheel", type=Path, help="diagnose's pure-Python wheel (scripts/build_wheels.sh)")
    parser.add_argument("--dest", type=Path, default=Path("tmg-bundle"))
    args = parser.parse_args(argv)
    try:
        chosen = bundle(args.wheel, args.dest)
    except (subprocess.CalledProcessError, OSError, zipfile.BadZipFile) as exc:
        print(f"bundle_tmg_host: {exc}", file=sys.stderr)
        return 1
    for name in sorted(chosen):
        print(chosen[name].name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
