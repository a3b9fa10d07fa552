"""Explanations of rules with `any`: filled from the alternative that matched, never a bare "?"."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from diagnose.facts import EvidenceBundle, make_fact
from tests.conftest import run_cli


def explain_of(tmp_path: Path, facts: list, rule_id: str, *args: str) -> tuple[str, str]:
    """(the rule's explanation in the JSON report, the text report) of analysing `facts`."""
    bundle = tmp_path / "bundle.json"
    EvidenceBundle(facts=tuple(facts)).save(bundle)
    result = run_cli("analyze", str(bundle), "--format", "json", "--no-input", *args)
    assert result.returncode == 0, result.stderr
    rules = [r for c in json.loads(result.stdout)["causes"] for r in c["rules"]]
    text = run_cli("analyze", str(bundle), "--no-input", *args)
    assert text.returncode == 0, text.stderr
    return next(r["explain"] for r in rules if r["id"] == rule_id), text.stdout


def server_leg(**counts: int):
    return make_fact("log.status_summary", "leg:server", "logs", scope="leg", leg="server", **counts)


def test_shipped_any_rule_explains_with_the_alternative_that_matched(tmp_path):
    # backend-refused-or-timed-out: any of `refused` (refused > 0) or `timed_out` (timed_out > 0); its
    # explanation reads {refused.refused} and {refused.timed_out}. Only `timed_out` matches here.
    said, text = explain_of(tmp_path, [server_leg(refused=0, timed_out=7)], "backend-refused-or-timed-out")
    assert said == "TMG logged 0 refused (10061) and 7 timed-out (10060) connections on the TMG-to-server leg"
    assert said in " ".join(text.split())
    assert "?" not in said
    said, _ = explain_of(tmp_path, [server_leg(refused=5, timed_out=0)], "backend-refused-or-timed-out")
    assert said == "TMG logged 5 refused (10061) and 0 timed-out (10060) connections on the TMG-to-server leg"


def test_shipped_capture_any_rule(tmp_path):
    fact = make_fact(
        "capture.teardown_summary",
        "leg:server",
        "capture",
        scope="leg",
        leg="server",
        connections=2,
        refused=0,
        unanswered=2,
    )
    said, _ = explain_of(tmp_path, [fact], "server-leg-connections-refused")
    assert said == "on the TMG-to-server leg the capture shows 0 refused and 2 unanswered connection attempts"


RULE = """\
id: fba-published
title: FBA stopped while OWA or ECP is published
status: experimental
when:
  fba: {kind: service.state, name: MSExchangeFBA, state: {ne: running}}
  any:
    a_owa: {kind: site.profile, published: {contains: owa}}
    b_ecp: {kind: site.profile, published: {contains: ecp}}
conclude:
  cause: exchange-fba-service-stopped
  certainty: 0.85
  explain: "MSExchangeFBA is {fba.state} on {fba.host} while {b_ecp.published} is published"
"""


def test_user_rule_with_any_uses_the_matching_alternative_and_names_what_is_missing(tmp_path):
    rules = tmp_path / "mine"
    rules.mkdir()
    (rules / "fba-published.yaml").write_text(textwrap.dedent(RULE), encoding="utf-8")
    stopped = make_fact("service.state", "cas01/MSExchangeFBA", "services", name="MSExchangeFBA", state="stopped")
    owa_only = make_fact("site.profile", "site", "profile", published=("owa", "outlook-anywhere"))
    said, _ = explain_of(tmp_path, [stopped, owa_only], "fba-published", "--rules", str(rules))
    # `b_ecp` did not match: the matching alternative's `a_owa` (also a site.profile) is read instead;
    # the service fact has no host, which says so instead of "?"
    assert said == "MSExchangeFBA is stopped on (host unknown) while owa, outlook-anywhere is published"
    both = make_fact("site.profile", "site", "profile", published=("ecp",))
    said, _ = explain_of(tmp_path, [stopped, owa_only, both], "fba-published", "--rules", str(rules))
    # two firings (a_owa on one profile, b_ecp on the other): the one that binds b_ecp itself explains,
    # although the a_owa firing sorts first
    assert said == "MSExchangeFBA is stopped on (host unknown) while ecp is published"
