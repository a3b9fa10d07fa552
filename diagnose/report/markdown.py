"""The diagnosis as Markdown, for tickets and mail."""

from __future__ import annotations

import re

from diagnose.diagnosis import CauseFinding, Diagnosis
from diagnose.report import case_folder_rows, cite, engine_line, headline
from diagnose.safetext import markdown as m

_LINK = re.compile(r"https?://[^\s<>`\\]+")
_IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


def _code(text: str) -> str:
    """An identifier in a code span; one that could leave the span is shown escaped instead."""
    return f"`{text}`" if _IDENT.fullmatch(text) else m(text)


def _reasoning(c: CauseFinding) -> list[str]:
    return [
        f"- {'supports' if s.certainty >= 0 else 'weakens'} ({s.certainty:+.2f}, rule {_code(s.rule.id)}): "
        f"{m(s.explain)}"
        for s in c.support
    ]


def render_markdown(d: Diagnosis, color: bool = False, why: bool = False) -> str:
    out = [f"# Diagnosis: {d.verdict.value}", "", f"**{m(headline(d))}**", ""]
    out += [f"> Note: {m(n)}" for n in d.notes] + ([""] if d.notes else [])
    if d.ranked:
        out += ["| # | certainty | class | cause | title |", "|---:|---:|---|---|---|"]
        for n, c in enumerate(d.ranked, 1):
            out.append(
                f"| {n} | {c.certainty:.2f} | {c.cause.verdict.value} | {_code(c.cause.id)} | {m(c.cause.title)} |"
            )
        out.append("")
        for n, c in enumerate(d.ranked, 1):
            out += [
                f"## {n}. {m(c.cause.title)}",
                "",
                f"{_code(c.cause.id)} - {c.cause.verdict.value}, certainty {c.certainty:.2f}",
                "",
                "Reasoning:",
                "",
            ]
            out += _reasoning(c)
            if c.evidence:
                out += ["", "Evidence:", ""]
                out += [f"- {m(cite(d, i))}" for i in c.evidence]
            out += ["", "What to do:", ""]
            out += [f"1. {m(step)}" for step in c.cause.remediation]
            out += [f"1. Gather: {m(g)}" for g in d.gather(c)]
            if c.cause.references:
                out += [
                    "",
                    "References: " + ", ".join(f"<{r}>" if _LINK.fullmatch(r) else m(r) for r in c.cause.references),
                ]
            out.append("")
    if d.ruled_out:
        out += ["## Ruled out or weakened", ""]
        for c in d.ruled_out:
            out += [f"### {_code(c.cause.id)} ({c.certainty:+.2f})", "", m(c.cause.title), "", *_reasoning(c), ""]
    if d.questions:
        out += ["## Questions that could change this", ""]
        out += [f"- {m(q.question.text)} ({m(' / '.join(q.question.choices))})" for q in d.questions]
        out.append("")
    if d.unknowns:
        out += ["## Undecided for lack of evidence", ""]
        out += [
            f"- {_code(o.rule.id)} -> {_code(o.rule.conclude.cause)}: needs {m(', '.join(o.missing))}"
            for o in d.unknowns
        ]
        out.append("")
    if why:
        out += ["## Rules considered", ""]
        out += [f"- {_code(o.rule.id)}: {m(o.status)} - {m(o.reason)}" for o in d.outcomes]
        out.append("")
    if d.bundle.probes:
        out += ["## Evidence gathered", "", "| check | status | reason |", "|---|---|---|"]
        out += [
            f"| {m(p.check or p.probe)} | {p.status.value} | "
            + "<br>".join([m(p.reason)] * bool(p.reason) + [f"note: {m(n)}" for n in p.notes_shown()])
            + " |"
            for p in d.bundle.probes
        ]
        out.append("")
    case = case_folder_rows(d)
    if case is not None:
        out += [f"## Case folder: {m(case[0])}", "", "| | file | kind or reason |", "|---|---|---|"]
        out += [f"| {word} | {m(file)} | {m(what)} |" for word, file, what in case[1]]
        out.append("")
    out.append(f"_{m(engine_line(d))}_")
    return "\n".join(out).rstrip() + "\n"
