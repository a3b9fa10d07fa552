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
    """User directories from options then the environment (os.pathsep separated), each once."""
    dirs = [Path(p) for p in given]
    dirs += [Path(p) for p in os.environ.get(env_var, "").split(os.pathsep) if p]
    return tuple(dict.fromkeys(dirs))


def use_check_dirs(given: Sequence[str]) -> None:
    """`--checks DIR` of `run` and `collect`: the directories replace the tables under checks/
    (exchange-endpoints.yaml, thresholds.yaml) as DIAGNOSE_CHECKS does, in the order `extra_dirs` gives
    (the options, then the variable). They are put in this process's DIAGNOSE_CHECKS (the host's
    environment is not touched), so the probe modules, which read the thresholds when first imported,
    and the worker processes started later see them; call it before any probe runs."""
    if given:
        os.environ["DIAGNOSE_CHECKS"] = os.pathsep.join(str(d) for d in extra_dirs("DIAGNOSE_CHECKS", tuple(given)))
