"""The `evidence` probe: facts recorded elsewhere (a bundle or a `{"facts": [...]}` file), read as they are.

Used to bring in evidence gathered by another tool or on another host, and by examples whose raw
artefacts have no probe yet. Facts are checked against the fact kinds like any bundle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diagnose.facts import Fact, JsonReader, Provenance, bounded_facts, load_json, parse_fact
from diagnose.kinds import fact_kinds
from diagnose.probes import ProbeContext, ProbeResult
from diagnose.probes.params import ProbeParams


def read_recorded_facts(path: Path) -> list[Fact]:
    raw = load_json(path)
    r = JsonReader(str(path))
    facts_raw = bounded_facts(r, r.obj(raw, "$").get("facts"))
    facts = [parse_fact(f, f"$.facts[{i}]", r) for i, f in enumerate(facts_raw)]
    fact_kinds().check(facts, str(path))
    # keep the original provenance, but say it was recorded and where it was read from
    return [
        Fact(
            f.kind,
            f.subject,
            f.attrs,
            Provenance(
                f.provenance.probe,
                f.provenance.check,
                f.provenance.source or path.name,
                f.provenance.location,
                f.provenance.time,
            ),
        )
        for f in facts
    ]


@dataclass(frozen=True)
class EvidenceParams(ProbeParams):
    """Parameters of the `evidence` probe: the bundles or `{"facts": [...]}` files to read."""

    probe = "evidence"
    paths: tuple[str, ...] = ()


def probe(ctx: ProbeContext, spec: EvidenceParams | Mapping[str, Any]) -> ProbeResult:
    paths = EvidenceParams.of(spec).paths
    if not paths:
        return ProbeResult.unavailable("no recorded evidence given")
    facts: list[Fact] = []
    for p in paths:
        path = Path(p)
        ctx.progress(ctx.check or "evidence", f"reading {path.name}")
        facts.extend(read_recorded_facts(path))
    return ProbeResult(tuple(facts))
