"""Where the shipped data lives: `rules/`, `checks/` and `examples/`.

In a source checkout (or an editable install) they sit beside the package; in a wheel they are
packaged as `diagnose/_data/<name>`. Both are found the same way, by `data_dir(name)`.
Users add their own with `--rules DIR` / `--checks DIR` or `DIAGNOSE_RULES` / `DIAGNOSE_CHECKS`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    return _PACKAGE.parent / name


def table_path(name: str, dirs: Sequence[Path] | None = None) -> Path:
    """A data table under checks/ (`exchange-endpoints.yaml`, `thresholds.yaml`): the shipped one, unless
    one of `dirs` (default: DIAGNOSE_CHECKS) holds its own; the last one wins."""
    found = data_dir("checks") / name
    for directory in dirs if dirs is not None else extra_dirs("DIAGNOSE_CHECKS"):
        if (directory / name).is_file():
            found = directory / name
    return found


def extra_dirs(env_var: str, given: tuple[str, ...] = ()) -> tuple[Path, ...]:
    """User directories from options then the environment (os.pathsep separated)."""
    dirs = [Path(p) for p in given]
    dirs += [Path(p) for p in os.environ.get(env_var, "").split(os.pathsep) if p]
    return tuple(dirs)
