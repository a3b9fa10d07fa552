"""Build hook: compiles the log scanner's optional C accelerator (diagnose/probes/logs/_fastscan.c).

A wheel gets the compiled module (and a platform tag); an editable install gets it built in place
beside the source, where the checkout's own imports find it. Where no C compiler works, the build
goes on without it, with a warning, and the scanner runs in pure Python: the same figures, slower.

The compiler is driven through setuptools' build_ext, which knows each platform's compiler (gcc,
clang, MSVC) and the flags Python was built with. Run this file directly to build in place:

    python hatch_build.py
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

MODULE = "diagnose.probes.logs._fastscan"
SOURCE = "diagnose/probes/logs/_fastscan.c"


def build_accelerator(root: Path, inplace: bool, out: Path) -> Path | None:
    """Compile the accelerator; returns the built file, or None (with a warning) when it could not be."""
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    extension = Extension(MODULE, [SOURCE], optional=True)
    command = build_ext(Distribution({"name": "tmg-diagnose", "ext_modules": [extension]}))
    command.inplace = inplace
    command.force = True  # never keep a stale build (its timestamp may be newer than an edited source)
    command.build_lib = str(out)
    command.build_temp = str(out / "temp")
    previous = Path.cwd()
    try:
        os.chdir(root)
        command.ensure_finalized()
        with contextlib.redirect_stdout(sys.stderr):
            command.run()
        built = Path(command.get_ext_fullpath(MODULE))
        built = built if built.is_absolute() else root / built
    except Exception as exc:  # any compiler or toolchain failure: go on in pure Python
        print(f"diagnose: C accelerator not built ({exc}); the log scanner will run in pure Python", file=sys.stderr)
        return None
    finally:
        os.chdir(previous)
    if not built.is_file():  # build_ext(optional=True) warns and goes on when the compiler fails
        print("diagnose: C accelerator not built; the log scanner will run in pure Python", file=sys.stderr)
        return None
    return built


class AcceleratorHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        if version == "editable":
            build_accelerator(root, inplace=True, out=Path(tempfile.mkdtemp(prefix="diagnose-build-")))
            return
        built = build_accelerator(root, inplace=False, out=Path(self.directory) / ".accelerator")
        if built is None:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        build_data["force_include"][str(built)] = f"{MODULE.replace('.', '/')}{built.name[len('_fastscan') :]}"


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    result = build_accelerator(here, inplace=True, out=Path(tempfile.mkdtemp(prefix="diagnose-build-")))
    print(result or "not built")
    sys.exit(0 if result else 1)
