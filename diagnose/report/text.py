"""The text report: a verdict headline, a ranked table, the evidence and what to do.

Readable without colour; coloured only when asked (a terminal, and NO_COLOR unset).
"""

from __future__ import annotations

import re
import secrets
import textwrap
from collections.abc import Iterable

import click

from diagnose.diagnosis import Diagnosis
from diagnose.report import case_folder_rows, cite, engine_line, headline
from diagnose.report.pictures import ladder_text, ladders_for, undecided_groups
from diagnose.safetext import neutralise

_VERDICT_COLOUR = {"benign": "green", "misconfiguration": "red", "fault": "red", "inconclusive": "yellow"}
MAX_EVIDENCE = 6


def render_text(d: Diagnosis, color: bool = False, why: bool = False) -> str:
    # Colour goes in as marks no evidence can forge (a fresh nonce), is put in after every control
    # character of the report has been neutralised, so only the report's own colour codes reach the terminal.
    nonce = secrets.token_hex(8)
    codes: list[str] = []

    def mark(code: str) -> str:
        codes.append(code)
        return f"\ue000{nonce}{len(codes) - 1}\ue001"

    def style(text: str, **kw: object) -> str:
        if not color:
            return text
        start, _, end = click.style("\0", **kw).partition("\0")
        return mark(start) + text + mark(end)

    out: list[str] = []
    head = headline(d)
    verdict, _, rest = head.partition(":")
    out.append(style(f"Verdict: {verdict.upper()}", fg=_VERDICT_COLOUR[d.verdict.value], bold=True) + " -" + rest)
    out.extend(f"Note: {n}" for n in d.notes)
    out.append("")
    likely, weakened = d.ranked, d.ruled_out
    if likely:
        out.append(style("Likely causes", bold=True))
        width = max(len(c.cause.id) for c in likely)
        out.append(f"  {'#':>2}  {'certainty':>9}  {'class':<16}  {'cause':<{width}}")
        for n, c in enumerate(likely, 1):
            line = f"  {n:>2}  {c.certainty:>9.2f}  {c.cause.verdict.value:<16}  {c.cause.id:<{width}}"
            out.append(style(line, fg=_VERDICT_COLOUR[c.cause.verdict.value]) if n == 1 else line)
        out.append("")
        for n, c in enumerate(likely, 1):
            out.append(style(f"{n}. {c.cause.title}", bold=True) + f"  [{c.cause.id}, {c.certainty:.2f}]")
            for s in c.support:
                sign = "+" if s.certainty >= 0 else "-"
                out.extend(
                    _wrap(
                        f"{sign} {s.explain}  (rule {s.rule.id}, {s.certainty:+.2f}"
                        + (f", {s.firings} matches" if s.firings > 1 else "")
                        + ")",
                        "   ",
                        "     ",
                    )
                )
            shown = list(c.evidence[:MAX_EVIDENCE])
            if shown:
                out.append("   evidence:")
                out.extend(f"     - {cite(d, i)}" for i in shown)
                if len(c.evidence) > MAX_EVIDENCE:
                    out.append(f"     - ... and {len(c.evidence) - MAX_EVIDENCE} more facts (see --format json)")
            steps = list(c.cause.remediation) + [f"gather: {g}" for g in d.gather(c)]
            if steps:
                out.append("   what to do:")
                for step in steps:
                    out.extend(_wrap(f"- {step}", "     ", "       "))
            out.append("")
    else:
        out.append("No cause could be established from the evidence gathered.")
        out.append("")
    if weakened:
        out.append(style("Ruled out or weakened", bold=True))
        for c in weakened:
            out.append(f"  {c.certainty:+.2f}  {c.cause.id}")
            for s in c.support:
                out.extend(_wrap(f"{s.explain} (rule {s.rule.id}, {s.certainty:+.2f})", "         ", "           "))
        out.append("")
    if d.questions:
        out.append(style("Questions that could change this", bold=True))
        for q in d.questions:
            out.append(f"  - {q.question.text} ({' / '.join(q.question.choices)})  [--answers: {q.question.id}]")
        out.append("")
    if d.unknowns:
        out.append(style("Undecided for lack of evidence", bold=True))
        for missing, causes in undecided_groups(d):
            out.extend(_wrap(f"- without {missing}: {', '.join(causes)}", "  ", "    "))
        out.append("")
    if why and likely:
        out.extend(_top_ladder(d, style("Packets of the top cause's connection", bold=True)))
    if why:
        out.append(style("Rules considered", bold=True))
        for o in d.outcomes:
            out.append(f"  {o.status:<8} {o.rule.id}: {o.reason}")
        out.append("")
    probes = [p for p in d.bundle.probes]
    if probes:
        out.append(style("Evidence gathered", bold=True))
        for p in probes:
            label = p.check or p.probe
            out.append(f"  {p.status.value:<11} {label}" + (f": {p.reason}" if p.reason else ""))
            out.extend(f"{'':15}note: {note}" for note in p.notes_shown())
        out.append("")
    out.extend(_case_folder(d, style("Case folder", bold=True)))
    if d.warnings:
        out.append(style("Warnings", bold=True))
        out.extend(f"  - {w}" for w in _dedupe(d.warnings))
        out.append("")
    out.append(engine_line(d))
    text = neutralise("\n".join(out).rstrip() + "\n", keep="\n")
    if codes:
        text = re.sub(f"\ue000{nonce}(\\d+)\ue001", lambda m: codes[int(m.group(1))], text)
    return text


def _case_folder(d: Diagnosis, title: str) -> list[str]:
    """`diagnose analyze DIR|ZIP`: each file taken (its kind) and skipped (why), the first of each."""
    found = case_folder_rows(d)
    if found is None:
        return []
    lines = {"took": "  took    {2}: {1}", "skipped": "  skipped {1}: {2}", "more": "  {1}"}
    return [f"{title}: {found[0]}", *(lines[row[0]].format(*row) for row in found[1]), ""]


def _top_ladder(d: Diagnosis, title: str) -> list[str]:
    """The first connection the top cause's evidence cites, as a text ladder (nothing without one)."""
    drawn = ladders_for(d, d.ranked[0])
    if not drawn:
        return []
    return [title, *ladder_text(drawn[0]), ""]


def _wrap(text: str, first: str, rest: str, width: int = 100) -> list[str]:
    return textwrap.wrap(text, width=width, initial_indent=first, subsequent_indent=rest) or [first]


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
