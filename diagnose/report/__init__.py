"""Renderers for a diagnosis: text (for people at a terminal), json (the public contract), markdown."""

from __future__ import annotations

from collections.abc import Callable

from diagnose.diagnosis import Diagnosis
from diagnose.errors import UsageError

FORMATS = ("text", "json", "markdown", "html")


def render(diagnosis: Diagnosis, fmt: str, color: bool = False, why: bool = False) -> str:
    renderer: Callable[..., str]
    if fmt == "json":
        from diagnose.report.json import render_json as renderer
    elif fmt == "markdown":
        from diagnose.report.markdown import render_markdown as renderer
    elif fmt == "html":
        from diagnose.report.html import render_html as renderer
    elif fmt == "text":
        from diagnose.report.text import render_text as renderer
    else:
        raise UsageError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    return renderer(diagnosis, color=color, why=why)


def headline(diagnosis: Diagnosis) -> str:
    """One sentence: the verdict and the cause that decided it (the first ranked, see ranking.order)."""
    verdict = diagnosis.verdict.value
    if not diagnosis.ranked:
        return f"{verdict}: no cause could be established from the evidence gathered"
    top = diagnosis.ranked[0]
    return f"{verdict}: {top.cause.title} (certainty {top.certainty:.2f})"


def engine_line(diagnosis: Diagnosis) -> str:
    """Which rule engine ran, and why (diagnose.engine.choose_engine)."""
    from diagnose.engine import LABELS

    label = LABELS.get(diagnosis.engine, diagnosis.engine)
    return f"Rule engine: {label}" + (f" ({diagnosis.engine_reason})" if diagnosis.engine_reason else "")


def cite(diagnosis: Diagnosis, index: int) -> str:
    fact = diagnosis.facts[index]
    return f"{fact.kind} {fact.subject} [{fact.provenance.cite()}]"


CASE_ROWS = 200  # files listed per kind (taken, skipped) in a case-folder section


def case_folder_rows(diagnosis: Diagnosis, limit: int = CASE_ROWS) -> tuple[str, list[tuple[str, str, str]]] | None:
    """`diagnose analyze DIR|ZIP`: (the roots, rows) where a row is ("took", file, kind) or ("skipped",
    file, reason) for the first `limit` files of each, each followed by ("more", text, "") when some
    were left out; None for a run without a case folder."""
    case = diagnosis.bundle.case_folder
    if not case:
        return None
    rows: list[tuple[str, str, str]] = []
    for key, word, what in (("taken", "took", "kind"), ("skipped", "skipped", "reason")):
        entries = list(case.get(key, []))
        rows += [(word, str(e.get("file")), str(e.get(what))) for e in entries[:limit]]
        if len(entries) > limit:
            rows.append(("more", f"... and {len(entries) - limit} more {key} (see --format json)", ""))
    return ", ".join(map(str, case.get("roots", []))), rows
