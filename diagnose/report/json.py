"""The diagnosis as JSON: the public contract (DESIGN.md). Change it only additively; bump SCHEMA_VERSION."""

from __future__ import annotations

from typing import Any

from diagnose import __version__
from diagnose.diagnosis import CauseFinding, Diagnosis
from diagnose.report import cite, headline
from diagnose.safetext import to_json

SCHEMA = "diagnose-diagnosis"
SCHEMA_VERSION = 2
# 1: the first contract.
# 2: `causes` is the ranked list only (the cause that decided the verdict first, see ranking.order);
#    causes ruled out or weakened to a certainty of 0 or below moved, in the same shape, to the new
#    `ruled_out`; new `decided_by`: the id of the cause that decided the verdict, or null.


def diagnosis_to_json(d: Diagnosis) -> dict[str, Any]:
    decider = d.decided_by
    out = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "tool_version": __version__,
        "rulebook_version": d.rulebook.version,
        "engine": d.engine,
        "engine_reason": d.engine_reason,
        "verdict": d.verdict.value,
        "headline": headline(d),
        "decided_by": decider.cause.id if decider else None,
        "notes": list(d.notes),
        "causes": [_cause(d, c) for c in d.ranked],
        "ruled_out": [_cause(d, c) for c in d.ruled_out],
        "unknowns": [
            {
                "rule": o.rule.id,
                "title": o.rule.title,
                "cause": o.rule.conclude.cause,
                "missing": list(o.missing),
                "reason": o.reason,
            }
            for o in d.unknowns
        ],
        "questions": [
            {
                "id": q.question.id,
                "text": q.question.text,
                "choices": list(q.question.choices),
                "weight": q.weight,
                "rules": list(q.rules),
                "causes": list(q.causes),
                "effects": [
                    {"answer": e.choice, "verdict": e.verdict.value, "top": e.top, "certainty": e.certainty}
                    for e in q.effects
                ],
            }
            for q in d.questions
        ],
        "rules_considered": [{"rule": o.rule.id, "status": o.status, "reason": o.reason} for o in d.outcomes],
        "probes": [p.to_json() for p in d.bundle.probes],
        "facts": [dict(f.to_json(), index=i) for i, f in enumerate(d.facts)],
        "warnings": list(d.warnings),
        "unused_kinds": list(d.unused_kinds),
    }
    if d.bundle.case_folder:  # `diagnose analyze DIR|ZIP`: each file taken (kind) or skipped (reason)
        out["case_folder"] = dict(d.bundle.case_folder)
    return out


def _cause(d: Diagnosis, c: CauseFinding) -> dict[str, Any]:
    return {
        "id": c.cause.id,
        "title": c.cause.title,
        "verdict": c.cause.verdict.value,
        "certainty": c.certainty,
        "rules": [
            {
                "id": s.rule.id,
                "title": s.rule.title,
                "certainty": s.certainty,
                "explain": s.explain,
                "firings": s.firings,
                "matches": [[{"binding": name, "fact": index} for name, index in m] for m in s.matches],
            }
            for s in c.support
        ],
        "evidence": [
            {"fact": i, "cite": cite(d, i), "provenance": d.facts[i].provenance.to_json()} for i in c.evidence
        ],
        "remediation": list(c.cause.remediation),
        "gather": list(d.gather(c)),
        "references": list(c.cause.references),
    }


def render_json(d: Diagnosis, color: bool = False, why: bool = False) -> str:
    return to_json(diagnosis_to_json(d))
