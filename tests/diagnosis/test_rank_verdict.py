"""The ranked list agrees with the verdict in every format (issue 11, item 1).

The reported case end to end: a real FBA outage (a Get-Service export with MSExchangeFBA stopped)
plus genuine dirty closes (TMG W3C Status 64 entries matched to a pcap of TMG's dirty closes). The
verdict is a misconfiguration; the FBA cause must come first in text, JSON, Markdown, HTML and
`--why`, and the benign dirty close after it. Then a property over generated certainty sets run
through the real analysis and every renderer.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from diagnose.diagnosis import analyze
from diagnose.diagnosis.ranking import ESTABLISHED, combine_all
from diagnose.engine import create_engine
from diagnose.facts import EvidenceBundle, make_fact
from diagnose.report import render
from diagnose.rulebook.model import Rulebook
from tests.conftest import REPO, run_cli
from tests.probes.capture.test_match import CAS, TMG, S, fw_row, segments, write_pcap, write_w3c
from tests.rulebook_util import rulebook

SERVICES = REPO / "tests" / "data" / "services" / "get-service-ps51.json"  # MSExchangeFBA Stopped
FORMATS = ("text", "json", "markdown", "html")
PROBLEMS = ("misconfiguration", "fault")


# -- reading the ranked list and the ruled-out section back out of each format -------------------------
def ranked_and_ruled_out(fmt: str, out: str) -> tuple[list[str], list[str]]:
    """(ranked cause ids in order, ruled-out cause ids) as the report shows them."""
    if fmt == "json":
        d = json.loads(out)
        return [c["id"] for c in d["causes"]], [c["id"] for c in d["ruled_out"]]
    if fmt == "text":
        ranked_part, _, ruled_part = out.partition("\nRuled out or weakened\n")
        table = ranked_part.partition("\nLikely causes\n")[2].split("\n\n")[0]
        ranked = re.findall(r"^\s+\d+\s+-?\d\.\d\d\s+\w+\s+(\S+)\s*$", table, re.M)
        ruled = re.findall(r"^  [+-]\d\.\d\d  (\S+)$", ruled_part.split("\n\n")[0], re.M)
        return ranked, ruled
    if fmt == "markdown":
        ranked_part, _, ruled_part = out.partition("\n## Ruled out or weakened\n")
        ranked = re.findall(r"^\| \d+ \| [-\d.]+ \| \w+ \| `([^`]+)` \|", ranked_part, re.M)
        ruled = re.findall(r"^### `([^`]+)` \(", ruled_part.split("\n## ")[0], re.M)
        return ranked, ruled
    ranked_part, _, ruled_part = out.partition('<h2 id="ruled-out">Ruled out or weakened</h2>')
    ranked = re.findall(r'<tr><td>\d+</td><td class="cf">[^<]*</td><td>.*?</td><td><a href="#([^"]+)">', ranked_part)
    ruled = re.findall(r'<h3 id="([^"]+)">', ruled_part.split("<h2")[0])
    return ranked, ruled


# -- the reported case, from raw files -----------------------------------------------------------------
def fba_outage_with_dirty_closes(tmp_path: Path) -> list[str]:
    """A pcap of five dirty closes by TMG, the five Status 64 entries TMG logged for them (W3C, UTC),
    a Get-Service JSON export with MSExchangeFBA stopped, and an Exchange 2010 profile with OWA."""
    segs, rows = [], []
    for n in range(5):
        port = 31024 + n
        segs += segments("dirty-close", (TMG, port), (CAS, 443), S + 10 * n + 0.5, n)
        rows.append(fw_row(S + 10 * n + 1, f"{TMG}:{port}", f"{CAS}:443"))
    cap = write_pcap(tmp_path / "tmg-internal.pcap", segs)
    log = write_w3c(tmp_path / "ISALOG_20240504_FWS_000.w3c", rows)
    profile = tmp_path / "site.yaml"
    profile.write_text(
        'exchange_version: "2010"\npublished: [owa, outlook-anywhere]\n'
        f"internal_addresses: [{CAS}]\ntmg_addresses: [{TMG}]\n",
        encoding="utf-8",
    )
    return [
        "run",
        "--offline",
        "--no-input",
        "--profile",
        str(profile),
        "--capture",
        str(cap),
        "--log",
        str(log),
        "--services-export",
        str(SERVICES),
    ]


@pytest.fixture(scope="module")
def reported_case(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return fba_outage_with_dirty_closes(tmp_path_factory.mktemp("fba-dirty"))


def test_reported_case_is_a_misconfiguration_with_genuine_dirty_closes(reported_case: list[str]) -> None:
    done = run_cli(*reported_case, "--format", "json")
    assert done.returncode == 0, done.stderr
    d = json.loads(done.stdout)
    certainty = {c["id"]: c["certainty"] for c in d["causes"]}
    # the situation of the report: the benign reading is the more certain one, and real
    assert certainty["dirty-close-by-design"] > certainty["exchange-fba-service-stopped"] >= ESTABLISHED
    match = next(f for f in d["facts"] if f["kind"] == "capture.status64_match")
    assert match["attrs"]["matched_dirty_close_by_tmg"] == 5
    assert d["verdict"] == "misconfiguration" and d["decided_by"] == "exchange-fba-service-stopped"
    assert d["causes"][0]["id"] == "exchange-fba-service-stopped"
    assert "No change is needed" not in " ".join(d["causes"][0]["remediation"])
    assert d["headline"].startswith("misconfiguration: The Exchange Forms-Based Authentication service")


@pytest.mark.parametrize("fmt,why", [(f, False) for f in FORMATS] + [("text", True), ("markdown", True)])
def test_reported_case_ranks_the_deciding_cause_first_in_every_format(
    reported_case: list[str], fmt: str, why: bool
) -> None:
    done = run_cli(*reported_case, "--format", fmt, *(["--why"] if why else []))
    assert done.returncode == 0, done.stderr
    ranked, ruled = ranked_and_ruled_out(fmt, done.stdout)
    assert ranked[:2] == ["exchange-fba-service-stopped", "dirty-close-by-design"], done.stdout
    assert ruled == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_ruled_out_cause_is_listed_only_under_ruled_out(fmt: str) -> None:
    """fba-stopped: users report failures and the Status 64 entries coincide with client errors, so
    the dirty close is weakened below 0; no format may rank it (the HTML once coloured it benign)."""
    done = run_cli("run", "--example", "fba-stopped", "--format", fmt)
    assert done.returncode == 0, done.stderr
    ranked, ruled = ranked_and_ruled_out(fmt, done.stdout)
    assert ranked == ["exchange-fba-service-stopped"]
    assert ruled == ["dirty-close-by-design"]
    if fmt == "html":
        section = done.stdout.partition("Ruled out or weakened")[2].split("<h2")[0]
        assert "benign" not in section
    if fmt == "json":
        d = json.loads(done.stdout)
        assert d["schema_version"] == 2 and d["ruled_out"][0]["certainty"] < 0


# -- the property: generated certainty sets through analyze() and every renderer -----------------------
CLASSES = ("benign", "misconfiguration", "fault", "inconclusive")
GRID = (-0.9, -0.6, -0.3, 0.2, 0.35, 0.45, 0.5, 0.6, 0.7, 0.85, 0.95)
CAUSES = {f"{cls}-{n}": cls for cls in CLASSES for n in (1, 2)}


@pytest.fixture(scope="module")
def grid_book(tmp_path_factory: pytest.TempPathFactory) -> Rulebook:
    """Per cause one rule per certainty of GRID, each fired by a log.status_summary with its own count."""
    rules, number = {}, 0
    for cause in CAUSES:
        for cf in GRID:
            number += 1
            rules[f"r{number}"] = (
                f"id: r{number}\ntitle: rule {number}\nstatus: experimental\nwhen:\n"
                f"  log: {{kind: log.status_summary, status64_count: {number}}}\n"
                f'conclude: {{cause: {cause}, certainty: {cf}, explain: "rule {number}"}}\n'
            )
    return rulebook(tmp_path_factory.mktemp("grid"), rules, CAUSES)


def oracle_verdict(certainty: dict[str, float]) -> str:
    established = {c: cf for c, cf in certainty.items() if cf >= ESTABLISHED}
    problems = [(cf, CAUSES[c] == "fault", CAUSES[c]) for c, cf in established.items() if CAUSES[c] in PROBLEMS]
    if problems:
        return max(problems)[2]
    for cls in ("inconclusive", "benign"):
        if any(CAUSES[c] == cls for c in established):
            return cls
    return "inconclusive"


def test_no_format_ranks_a_benign_cause_above_the_deciding_problem(grid_book: Rulebook) -> None:
    rng = random.Random(20261206)
    engine = create_engine(grid_book, "reference")
    by_count = {int(r.when.bindings()[0].tests[0].value): r for r in grid_book.rules}
    problem_verdicts = 0
    for case in range(300):
        chosen = sorted(rng.sample(sorted(by_count), rng.randint(1, 12)))
        facts = tuple(make_fact("log.status_summary", f"s{n}", "test", status64_count=n) for n in chosen)
        d = analyze(EvidenceBundle(facts), grid_book, engine)
        supports: dict[str, list[float]] = {}
        for n in chosen:
            supports.setdefault(by_count[n].conclude.cause, []).append(by_count[n].conclude.certainty)
        certainty = {c: round(combine_all(v), 4) for c, v in supports.items()}  # as analysis rounds
        if oracle_verdict(certainty) in PROBLEMS:  # the residual inconclusive causes drop out then
            certainty = {c: cf for c, cf in certainty.items() if CAUSES[c] != "inconclusive"}
        assert d.verdict.value == oracle_verdict(certainty), (case, certainty)
        positive = {c for c, cf in certainty.items() if cf > 0}
        for fmt in FORMATS:
            ranked, ruled = ranked_and_ruled_out(fmt, render(d, fmt, why=case % 2 == 0))
            context = (case, fmt, certainty, ranked)
            assert set(ranked) == positive and len(ranked) == len(positive), context
            assert sorted(ruled) == sorted(set(certainty) - positive), context
            if d.verdict.value not in PROBLEMS:
                continue
            problem_verdicts += fmt == "json"
            top = ranked[0]
            assert CAUSES[top] == d.verdict.value and certainty[top] >= ESTABLISHED, context
            deciding_cf = max(cf for c, cf in certainty.items() if CAUSES[c] == d.verdict.value)
            assert abs(certainty[top] - deciding_cf) < 1e-3, context
            last_problem = max(i for i, c in enumerate(ranked) if CAUSES[c] in PROBLEMS and certainty[c] >= ESTABLISHED)
            assert all(CAUSES[c] != "benign" for c in ranked[:last_problem]), context
    assert problem_verdicts > 50  # the generator does reach the case the property is about
