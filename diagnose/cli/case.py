"""The case folder on the command line: `diagnose analyze DIR|ZIP` and `diagnose run --evidence-dir DIR|ZIP`."""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from diagnose.casefolder import CaseFolder, add_to_inputs, open_case
from diagnose.cli.common import note


def is_case(path: str) -> bool:
    """A folder, or a zip (a bundle is JSON): read as a case folder, not as a bundle."""
    p = Path(path)
    return p.is_dir() or (p.is_file() and zipfile.is_zipfile(p))


def open_for_run(roots: Sequence[str], inputs: object, redact: bool = False) -> CaseFolder:
    """Survey the case, say on stderr what was taken and skipped (one line each), and add what was
    taken to the run's inputs. The caller closes it after collecting."""
    case = open_case(list(roots))
    try:
        add_to_inputs(case, inputs)
    except BaseException:
        case.close()
        raise
    scrub = _scrubber(case) if redact else None
    for line in case.lines():
        note("diagnose: case: " + (scrub(line) if scrub else line))
    note(f"diagnose: case: {len(case.taken)} file(s) taken, {len(case.skipped)} skipped")
    return case


def shown_paths(case: CaseFolder) -> list[str]:
    """Every file of the case as cited (zip!member as a path), for --redact to learn their names."""
    return [
        *case.roots,
        *(t.shown.replace("!", "/") for t in case.taken),
        *(s.shown.replace("!", "/") for s in case.skipped),
    ]


def _scrubber(case: CaseFolder) -> Callable[[str], str]:
    from diagnose.redact import Redactor

    redactor = Redactor()
    redactor.paths(shown_paths(case))
    return redactor.text
