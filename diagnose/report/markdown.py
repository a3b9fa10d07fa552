"""The diagnosis as Markdown, for tickets and mail."""

from __future__ import annotations

from diagnose.analysis import CauseFinding, Diagnosis
from diagnose.report import cite, headline


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _reasoning(c: CauseFinding) -> list[str]:
    return [f"- {'supports' if s.certainty >= 0 else 'weakens'} ({s.certainty:+.2f}, rule `{s.rule.id}`): {s.explain}"
            for s in c.support]


def render_markdown(d: Diagnosis, color: bool = False, why: bool = False) -> str:
    out = [f"# Diagnosis: {d.verdict.value}", "", f"**{_cell(headline(d))}**", ""]
    if d.ranked:
        out += ["| # | certainty | class | cause | title |", "|---:|---:|---|---|---|"]
        for n, c in enumerate(d.ranked, 1):
            out.append(f"| {n} | {c.certainty:.2f} | {c.cause.verdict.value} | `{c.cause.id}` "
                       f"| {_cell(c.cause.title)} |")
        out.append("")
        for n, c in enumerate(d.ranked, 1):
            out += [f"## {n}. {c.cause.title}", "", f"`{c.cause.id}` - {c.cause.verdict.value}, certainty "
                    f"{c.certainty:.2f}", "", "Reasoning:", ""]
            out += _reasoning(c)
            if c.evidence:
                out += ["", "Evidence:", ""]
                out += [f"- {cite(d, i)}" for i in c.evidence]
            out += ["", "What to do:", ""]
            out += [f"1. {step}" for step in c.cause.remediation]
            out += [f"1. Gather: {g}" for g in d.gather(c)]
            if c.cause.references:
                out += ["", "References: " + ", ".join(f"<{r}>" for r in c.cause.references)]
            out.append("")
    if d.ruled_out:
        out += ["## Ruled out or weakened", ""]
        for c in d.ruled_out:
            out += [f"### `{c.cause.id}` ({c.certainty:+.2f})", "", _cell(c.cause.title), "", *_reasoning(c), ""]
    if d.questions:
        out += ["## Questions that could change this", ""]
        out += [f"- {q.question.text} ({' / '.join(q.question.choices)})" for q in d.questions]
        out.append("")
    if d.unknowns:
        out += ["## Undecided for lack of evidence", ""]
        out += [f"- `{o.rule.id}` -> `{o.rule.conclude.cause}`: needs {', '.join(o.missing)}" for o in d.unknowns]
        out.append("")
    if why:
        out += ["## Rules considered", ""]
        out += [f"- `{o.rule.id}`: {o.status} - {o.reason}" for o in d.outcomes]
        out.append("")
    if d.bundle.probes:
        out += ["## Evidence gathered", "", "| check | status | reason |", "|---|---|---|"]
        out += [f"| {p.check or p.probe} | {p.status.value} | {_cell(p.reason)} |" for p in d.bundle.probes]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
