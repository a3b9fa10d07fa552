"""The diagnosis as one self-contained HTML page (no scripts, no external resources), for mail and tickets."""

from __future__ import annotations

from html import escape as _html_escape

from diagnose.diagnosis import CauseFinding, Diagnosis
from diagnose.report import case_folder_rows, cite, engine_line, headline, pictures
from diagnose.safetext import neutralise

_COLOUR = {"benign": "#1a7f37", "misconfiguration": "#cf222e", "fault": "#cf222e", "inconclusive": "#9a6700"}
_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:60rem;
color:#1f2328;line-height:1.45}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left}
th{background:#f6f8fa}.cf{text-align:right;font-variant-numeric:tabular-nums}.v{font-weight:600}
code{background:#f6f8fa;padding:0 .25rem}.muted{color:#656d76}li{margin:.15rem 0}
figure{margin:1rem 0;overflow-x:auto}figcaption{font-size:.9rem}svg{max-width:100%;height:auto}
pre{background:#f6f8fa;padding:.4rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all;font-size:.8rem}
details{margin:.2rem 0}summary{cursor:pointer}
"""


def escape(text: str) -> str:
    """Evidence text for HTML: control, bidi and surrogate characters shown as escapes, markup escaped."""
    return _html_escape(neutralise(text))


def _v(value: str) -> str:
    return f'<span class="v" style="color:{_COLOUR.get(value, "#1f2328")}">{escape(value)}</span>'


def _reasoning(c: CauseFinding) -> str:
    """The rules for and against a cause, as a list (a ruled-out cause gets no class colour)."""
    items = [
        f"<li>{'supports' if s.certainty >= 0 else 'weakens'} ({s.certainty:+.2f}, rule "
        f"<code>{escape(s.rule.id)}</code>): {escape(s.explain)}</li>"
        for s in c.support
    ]
    return "<ul>" + "".join(items) + "</ul>"


def render_html(d: Diagnosis, color: bool = False, why: bool = False) -> str:
    e = escape
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>diagnose: {e(d.verdict.value)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Verdict: {_v(d.verdict.value)}</h1>",
        f"<p>{e(headline(d))}</p>",
    ]
    out += [f'<p class="note">Note: {e(n)}</p>' for n in d.notes]
    drawn: set[int] = set()  # ladders drawn (fact indices)
    if d.ranked:
        out.append("<table><tr><th>#</th><th>certainty</th><th>class</th><th>cause</th></tr>")
        for n, c in enumerate(d.ranked, 1):
            out.append(
                f'<tr><td>{n}</td><td class="cf">{c.certainty:.2f}</td><td>{_v(c.cause.verdict.value)}</td>'
                f'<td><a href="#{e(c.cause.id)}">{e(c.cause.title)}</a></td></tr>'
            )
        out.append("</table>")
        out.extend(_timeline_section(d))
        for c in d.ranked:
            out.append(f'<h2 id="{e(c.cause.id)}">{e(c.cause.title)}</h2>')
            out.append(
                f'<p class="muted"><code>{e(c.cause.id)}</code>, {_v(c.cause.verdict.value)}, certainty '
                f"{c.certainty:.2f}</p>"
            )
            out.append(_reasoning(c))
            if c.evidence:
                out.append("<p>Evidence:</p><ul>" + "".join(f"<li>{e(cite(d, i))}</li>" for i in c.evidence) + "</ul>")
                out.extend(_pictures(d, c, drawn))
            steps = [e(step) for step in c.cause.remediation] + [f"Gather: {e(g)}" for g in d.gather(c)]
            if steps:
                out.append("<p>What to do:</p><ol>" + "".join(f"<li>{step}</li>" for step in steps) + "</ol>")
            if c.cause.references:
                out.append(
                    "<p class='muted'>References: "
                    + ", ".join(
                        f'<a href="{e(r)}">{e(r)}</a>' if r.startswith(("https://", "http://")) else e(r)
                        for r in c.cause.references
                    )
                    + "</p>"
                )
    else:
        out.append("<p>No cause could be established from the evidence gathered.</p>")
        out.extend(_timeline_section(d))
    out.extend(_other_ladders(d, drawn))
    if d.ruled_out:
        out.append('<h2 id="ruled-out">Ruled out or weakened</h2>')
        for c in d.ruled_out:
            out.append(
                f'<h3 id="{e(c.cause.id)}"><code>{e(c.cause.id)}</code> ({c.certainty:+.2f}): {e(c.cause.title)}</h3>'
            )
            out.append(_reasoning(c))
    if d.questions:
        out.append("<h2>Questions that could change this</h2><ul>")
        out += [
            f"<li>{e(q.question.text)} <span class='muted'>({e(' / '.join(q.question.choices))})</span></li>"
            for q in d.questions
        ]
        out.append("</ul>")
    out.extend(_undecided(d))
    if why:
        out.append("<h2>Rules considered</h2><table><tr><th>rule</th><th>status</th><th>why</th></tr>")
        out += [
            f"<tr><td><code>{e(o.rule.id)}</code></td><td>{e(o.status)}</td><td>{e(o.reason)}</td></tr>"
            for o in d.outcomes
        ]
        out.append("</table>")
    if d.bundle.probes:
        out.append("<h2>Evidence gathered</h2><table><tr><th>check</th><th>status</th><th>reason</th></tr>")
        out += [
            f"<tr><td>{e(p.check or p.probe)}</td><td>{e(p.status.value)}</td><td>{e(p.reason)}"
            + "".join(f'<br><span class="muted">note: {e(note)}</span>' for note in p.notes_shown())
            + "</td></tr>"
            for p in d.bundle.probes
        ]
        out.append("</table>")
    case = case_folder_rows(d)
    if case is not None:
        out.append(f"<h2>Case folder: {e(case[0])}</h2><table><tr><th></th><th>file</th><th>kind or reason</th></tr>")
        out += [f"<tr><td>{e(word)}</td><td>{e(file)}</td><td>{e(what)}</td></tr>" for word, file, what in case[1]]
        out.append("</table>")
    out.append(f'<p class="muted">diagnose, rulebook {e(d.rulebook.version)}; {e(engine_line(d))}</p></body></html>')
    return "\n".join(out) + "\n"


# -- pictures: timeline, packet ladders, the evidence as read (diagnose.report.pictures) ---------------
def _timeline_section(d: Diagnosis) -> list[str]:
    t = pictures.timeline(d)
    if t is None:
        return []
    return ['<h2 id="timeline">Status 64 over time</h2>', f"<figure>{pictures.timeline_svg(t)}</figure>"]


def _pictures(d: Diagnosis, c: CauseFinding, drawn: set[int]) -> list[str]:
    """The ladders of a cause's connections (each drawn once in the page, linked after) and the raw
    lines behind each cited fact, collapsed."""
    out: list[str] = []
    excerpts = dict(d.bundle.excerpts)
    for lad in pictures.ladders_for(d, c):
        if lad.index in drawn:
            out.append(
                f'<p class="muted">Packets: see <a href="#{pictures.esc(lad.anchor)}">'
                f"{pictures.esc(lad.title)}</a> above.</p>"
            )
            continue
        drawn.add(lad.index)
        out.append(pictures.ladder_html(lad, excerpts))
    shown = []
    for i in c.evidence:
        lines = pictures.read_lines(d, i)
        if lines:
            body = "\n".join(f"{key}  {text}" for key, text in lines)
            shown.append(
                f"<details><summary>{pictures.esc(cite(d, i))}: {len(lines)} line"
                f"{'s' if len(lines) > 1 else ''} as read</summary><pre>{pictures.esc(body)}</pre></details>"
            )
    if shown:
        out.append('<div class="as-read"><p>The evidence as it was read:</p>' + "".join(shown) + "</div>")
    return out


def _undecided(d: Diagnosis) -> list[str]:
    groups = pictures.undecided_groups(d)
    if not groups:
        return []
    items = [
        f"<li>without <code>{pictures.esc(missing)}</code>: "
        + ", ".join(f"<code>{pictures.esc(cause)}</code>" for cause in causes)
        + "</li>"
        for missing, causes in groups
    ]
    return ["<h2>Undecided for lack of evidence</h2><ul>", *items, "</ul>"]


def _other_ladders(d: Diagnosis, drawn: set[int]) -> list[str]:
    """The connections the capture cites that no cause above drew."""
    rest = [lad for lad in pictures.ladders(d) if lad.index not in drawn]
    if not rest:
        return []
    excerpts = dict(d.bundle.excerpts)
    return [
        '<h2 id="other-connections">Other connections the capture cites</h2>',
        *(pictures.ladder_html(lad, excerpts) for lad in rest),
    ]
