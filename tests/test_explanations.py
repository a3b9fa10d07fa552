"""Explanations say what the evidence shows, end to end from raw files (issue 11, item 4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import REPO, run_cli
from tests.probes.capture.test_match import CAS, TMG, S, fw_row, segments, write_pcap, write_w3c
from tests.rulebook_util import write_rules


def run_json(*args: str) -> dict[str, Any]:
    done = run_cli("run", "--offline", "--no-input", *args, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def explanations(d: dict[str, Any], cause: str) -> dict[str, str]:
    found = next(c for c in d["causes"] + d["ruled_out"] if c["id"] == cause)
    return {r["id"]: r["explain"] for r in found["rules"]}


def test_dirty_close_explanations_cite_only_dirty_closes(tmp_path: Path) -> None:
    """A capture where graceful closes come before the dirty closes: the samples
    of every teardown kind are in the facts, but the dirty-close reasoning cites dirty closes alone."""
    segs, rows = [], []
    for n in range(3):
        segs += segments("graceful-server-first", (TMG, 30000 + n), (CAS, 443), S + 5 * n + 0.2, n)
    for n in range(4):
        port = 31000 + n
        segs += segments("dirty-close", (TMG, port), (CAS, 443), S + 40 + 5 * n + 0.5, 20 + n)
        rows.append(fw_row(S + 40 + 5 * n + 1, f"{TMG}:{port}", f"{CAS}:443"))
    rows.append(fw_row(S + 1, f"{TMG}:30000", f"{CAS}:443"))  # one Status 64 entry on a graceful close
    cap = write_pcap(tmp_path / "tmg.pcap", segs)
    log = write_w3c(tmp_path / "ISALOG_20240504_FWS_000.w3c", rows)
    profile = tmp_path / "site.yaml"
    profile.write_text(f"internal_addresses: [{CAS}]\ntmg_addresses: [{TMG}]\n", encoding="utf-8")
    d = run_json("--profile", str(profile), "--capture", str(cap), "--log", str(log))
    summary = next(f for f in d["facts"] if f["kind"] == "capture.teardown_summary" and f["subject"] == "all")
    assert any(s.startswith("graceful:") for s in summary["attrs"]["samples"])  # the trap is there
    assert d["causes"][0]["id"] == "dirty-close-by-design"
    said = explanations(d, "dirty-close-by-design")
    teardown, matched = said["dirty-close-by-design"], said["status64-matches-dirty-close"]
    assert "graceful" not in teardown
    assert teardown.count("dirty-close: tmg.pcap frames") == 4
    assert "4 of 5 Status 64 entries" in matched
    assert matched.count("(dirty close by TMG)") == 4 and "graceful" not in matched and ":30000" not in matched


def test_a_filter_on_a_field_that_is_not_a_list_is_a_load_error(tmp_path: Path) -> None:
    rule = (
        "id: bad-filter\ntitle: t\nstatus: experimental\nwhen:\n"
        "  log: {kind: log.status_summary, flood_denials: {gt: 0}}\n"
        'conclude: {cause: c1, certainty: 0.5, explain: "{log.flood_denials:x} denials"}\n'
    )
    write_rules(tmp_path, {"bad-filter": rule})
    done = run_cli("rules", "lint", str(tmp_path / "rules"))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "'log.flood_denials' is not a list" in done.stdout + done.stderr


def test_what_to_gather_next_never_asks_for_evidence_that_was_given(tmp_path: Path) -> None:
    """Users report failures that a capture and logs of dirty closes do not explain: the residual
    cause lists what to gather next, less the capture, the logs and the services export given."""
    cap = write_pcap(tmp_path / "tmg.pcap", segments("dirty-close", (TMG, 31000), (CAS, 443), S + 0.5))
    log = write_w3c(tmp_path / "ISALOG_20240504_FWS_000.w3c", [fw_row(S + 1, f"{TMG}:31000", f"{CAS}:443")])
    profile = tmp_path / "site.yaml"
    profile.write_text(
        f'exchange_version: "2016"\npublished: [owa]\ninternal_addresses: [{CAS}]\ntmg_addresses: [{TMG}]\n',
        encoding="utf-8",
    )
    answers = tmp_path / "answers.yaml"
    answers.write_text('users-report-failures: "yes"\n', encoding="utf-8")
    running = tmp_path / "services.json"  # a Get-Service export where every Exchange service runs
    records = json.loads((REPO / "tests" / "data" / "services" / "get-service-ps7-enums.json").read_text("utf-8"))
    running.write_text(json.dumps([dict(r, Status="Running") for r in records]), encoding="utf-8")
    given = ["--profile", str(profile), "--capture", str(cap), "--log", str(log), "--answers", str(answers)]
    for extra, asked in (
        ([], ["--profile", "--services-export"]),
        (["--services-export", str(running)], ["--profile"]),
    ):
        d = run_json(*given, *extra)
        top = d["causes"][0]
        assert (d["verdict"], top["id"]) == ("inconclusive", "unexplained-user-impact")
        options = [
            o
            for g in top["gather"]
            for o in ("--log", "--capture", "--profile", "--services-export")
            if f"diagnose {o}" in g
        ]
        assert options == asked, top["gather"]
        assert any(g.startswith("Which clients are affected") for g in top["gather"])
        text = run_cli("run", "--offline", "--no-input", *given, *extra).stdout
        gather_lines = [line for line in text.splitlines() if "gather:" in line]
        assert gather_lines and not [line for line in gather_lines if "--capture" in line or "--log" in line]
