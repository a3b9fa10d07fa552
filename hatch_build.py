"""Build hook: compiles the optional C accelerators of the log scanner (diagnose/probes/logs/_fastscan.c),
the capture readers (diagnose/probes/capture/_fastcap.c) and the proxy log reader
(diagnose/probes/proxylogs/_fastproxy.c).

A wheel gets the compiled modules (and a platform tag); an editable install gets them built in place
beside the sources, where the checkout's own imports find them. Where no C compiler works, the build
goes on without them, with a warning, and the scanner and readers run in pure Python: the same
figures, slower.

The compiler is driven through setuptools' build_ext, which knows each platform's compiler (gcc,
clang, MSVC) and the flags Python was built with. DIAGNOSE_PURE_PYTHON=1 builds the pure-Python wheel
(py3-none-any, no accelerators) that goes next to the platform one (scripts/build_wheels.sh).
Run this file directly to build in place:

    python hatch_build.py
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.metadata.plugin.interface import MetadataHookInterface

# module -> C source (each one optional: one that does not compile leaves its part in pure Python)
ACCELERATORS = {
    "diagnose.probes.logs._fastscan": "diagnose/probes/logs/_fastscan.c",
    "diagnose.probes.capture._fastcap": "diagnose/probes/capture/_fastcap.c",
    "diagnose.probes.proxylogs._fastproxy": "diagnose/probes/proxylogs/_fastproxy.c",
}


def build_accelerators(root: Path, inplace: bool, out: Path) -> dict[str, Path]:
    """Compile the accelerators; returns the built file of each module that could be built (a warning
    names each one that could not)."""
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    extensions = [Extension(module, [source], optional=True) for module, source in ACCELERATORS.items()]
    command = build_ext(Distribution({"name": "tmg-diagnose", "ext_modules": extensions}))
    command.inplace = inplace
    command.force = True  # never keep a stale build (its timestamp may be newer than an edited source)
    command.build_lib = str(out)
    command.build_temp = str(out / "temp")
    previous = Path.cwd()
    built: dict[str, Path] = {}
    try:
        os.chdir(root)
        command.ensure_finalized()
        for module in ACCELERATORS:  # a build that fails must not leave an older one looking built
            with contextlib.suppress(OSError):
                Path(command.get_ext_fullpath(module)).unlink(missing_ok=True)
        with contextlib.redirect_stdout(sys.stderr):
            command.run()
        for module in ACCELERATORS:
            path = Path(command.get_ext_fullpath(module))
            path = path if path.is_absolute() else root / path
            if path.is_file():  # build_ext(optional=True) warns and goes on when the compiler fails
                built[module] = path
    except Exception as exc:  # any compiler or toolchain failure: go on in pure Python
        print(f"diagnose: C accelerators not built ({exc}); running in pure Python", file=sys.stderr)
        return {}
    finally:
        os.chdir(previous)
    for module in ACCELERATORS:
        if module not in built:
            print(f"diagnose: C accelerator {module} not built; that part runs in pure Python", file=sys.stderr)
    return built


class AcceleratorHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        if version == "editable":
            build_accelerators(root, inplace=True, out=Path(tempfile.mkdtemp(prefix="diagnose-build-")))
            return
        if os.environ.get("DIAGNOSE_PURE_PYTHON"):  # the pure-Python wheel (py3-none-any), for any platform
            return
        built = build_accelerators(root, inplace=False, out=Path(self.directory) / ".accelerator")
        if not built:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        for module, path in built.items():
            stem = module.rsplit(".", 1)[1]
            build_data["force_include"][str(path)] = f"{module.replace('.', '/')}{path.name[len(stem) :]}"


# Markdown images and links: ![alt](target) and [text](target)
_MD_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def index_readme(text: str) -> str:
    """README.md as the package's description (an index page, `pip show`, inside the wheel), where a
    link relative to the source tree leads nowhere: such an image becomes its caption and the path
    in the source, such a link its text. Absolute http(s) links stay."""

    def keep_or_flatten(match: re.Match[str]) -> str:
        image, label, target = match.groups()
        if target.startswith(("https://", "http://")):
            return match.group(0)
        return f"*{label}* (`{target}` in the source tree)" if image else label

    return _MD_LINK.sub(keep_or_flatten, text)


class ReadmeHook(MetadataHookInterface):
    """The description is README.md with its source-tree links made plain (index_readme)."""

    PLUGIN_NAME = "custom"

    def update(self, metadata: dict[str, Any]) -> None:
        text = (Path(self.root) / "README.md").read_text(encoding="utf-8")
        metadata["readme"] = {"content-type": "text/markdown", "text": index_readme(text)}


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    result = build_accelerators(here, inplace=True, out=Path(tempfile.mkdtemp(prefix="diagnose-build-")))
    for built in result.values():
        print(built)
    sys.exit(0 if len(result) == len(ACCELERATORS) else 1)
