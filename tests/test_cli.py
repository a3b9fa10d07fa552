"""The command line as a user meets it: examples, reports, exit codes, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli


def diagnose_json(*args: str) -> dict:
    result = run_cli(*args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_seed_example_is_benign_dirty_close():
    result = run_cli("run", "--example", "seed")
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("Verdict: BENIGN")
    d = diagnose_json("run", "--example", "seed")
    assert d["verdict"] == "benign"
    assert d["causes"][0]["id"] == "dirty-close-by-design"
    rules = {r["id"] for r in d["causes"][0]["rules"]}
    assert "dirty-close-by-design" in rules
    connection = next(f for f in d["facts"] if f["kind"] == "capture.connection")
    assert connection["attrs"]["reset_by_role"] == "tmg" and connection["attrs"]["fin_by_role"] == "server"
    assert (connection["attrs"]["first_frame"], connection["attrs"]["last_frame"]) == (1348, 1410)


@pytest.mark.parametrize(
    "name,verdict,top",
    [
        ("dns-mismatch", "misconfiguration", "name-resolution-mismatch"),
        ("fba-stopped", "misconfiguration", "exchange-fba-service-stopped"),
    ],
)
def test_misconfiguration_examples(name, verdict, top):
    d = diagnose_json("run", "--example", name)
    assert d["verdict"] == verdict
    assert d["causes"][0]["id"] == top
    assert d["decided_by"] == top and all(c["certainty"] > 0 for c in d["causes"])
    assert d["causes"][0]["remediation"]
    assert all(c["id"] != "unexplained-user-impact" for c in d["causes"])  # residual cause dropped


def test_json_contract_keys():
    d = diagnose_json("run", "--example", "seed")
    for key in ("verdict", "causes", "unknowns", "questions", "facts"):
        assert key in d
    cause = d["causes"][0]
    for key in ("id", "title", "verdict", "certainty", "rules", "evidence", "remediation"):
        assert key in cause
    evidence = cause["evidence"][0]
    assert evidence["provenance"]["probe"]


def test_examples_listing_names_all_three():
    result = run_cli("examples")
    names = {line.split()[0] for line in result.stdout.splitlines() if line and not line.startswith("Run")}
    assert {"seed", "dns-mismatch", "fba-stopped"} <= names


def test_markdown_report_and_output_file(tmp_path: Path):
    out = tmp_path / "report.md"
    result = run_cli("run", "--example", "dns-mismatch", "--format", "markdown", "-o", str(out))
    assert result.returncode == 0 and result.stdout == ""
    text = out.read_text()
    assert text.startswith("# Diagnosis: misconfiguration")
    assert "`name-resolution-mismatch`" in text


@pytest.mark.parametrize("name", ["seed", "dns-mismatch", "fba-stopped"])
def test_collect_then_analyze_gives_the_same_diagnosis(tmp_path: Path, name: str):
    bundle = tmp_path / f"{name}.json"
    collected = run_cli("collect", "--example", name, "-o", str(bundle))
    assert collected.returncode == 0, collected.stderr
    analyzed = diagnose_json("analyze", str(bundle))
    direct = diagnose_json("run", "--example", name)
    for d in (analyzed, direct):  # when each fact was gathered differs between the two runs
        for cause in d["causes"]:
            for evidence in cause["evidence"]:
                evidence["provenance"].pop("time", None)
    for key in ("verdict", "causes", "unknowns", "questions"):
        assert analyzed[key] == direct[key], key


def test_answers_file_completes_a_bundle(tmp_path: Path):
    example = REPO / "examples" / "seed"
    bundle = tmp_path / "seed.json"
    collected = run_cli(
        "collect",
        "--offline",
        "--profile",
        str(example / "profile.yaml"),
        "--capture",
        str(example / "netmon-trace.txt"),
        "--log",
        str(example / "ISALOG_20110504_FWS_000.w3c"),
        "-o",
        str(bundle),
    )
    assert collected.returncode == 0, collected.stderr
    assert diagnose_json("analyze", str(bundle))["questions"][0]["id"] == "users-report-failures"
    answers = tmp_path / "answers.yaml"
    answers.write_text("users-report-failures: no\n")
    d = diagnose_json("analyze", str(bundle), "--answers", str(answers))
    assert d["verdict"] == "benign" and d["causes"][0]["id"] == "dirty-close-by-design"
    assert d["questions"] == []
    assert d["causes"][0]["certainty"] == diagnose_json("run", "--example", "seed")["causes"][0]["certainty"]


def test_unanswered_question_is_offered(tmp_path: Path):
    example = REPO / "examples" / "seed"
    d = diagnose_json(
        "run",
        "--offline",
        "--profile",
        str(example / "profile.yaml"),
        "--capture",
        str(example / "netmon-trace.txt"),
        "--no-input",
    )
    assert [q["id"] for q in d["questions"]][:1] == ["users-report-failures"]
    assert any(u["rule"] == "no-user-impact" for u in d["unknowns"])


def test_fail_on_and_strict_exit_codes():
    assert run_cli("run", "--example", "dns-mismatch", "--fail-on", "0.5").returncode == 1
    assert run_cli("run", "--example", "seed", "--fail-on", "0.5").returncode == 0
    assert run_cli("run", "--example", "seed", "--strict").returncode == 4


# ------------------------------------------------------------------------------------ bad input


def one_error_line(result, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_malformed_json_bundle(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format_version": 1,\n "facts": [\n  {"kind": "answer",,}\n ]}\n')
    line = one_error_line(run_cli("analyze", str(bad)), 2)
    assert line.startswith(f"diagnose: error: {bad}:3: malformed JSON")


def test_wrong_types_in_bundle(tmp_path: Path):
    bad = tmp_path / "types.json"
    bad.write_text(
        json.dumps(
            {
                "format_version": 1,
                "facts": [{"kind": "log.status_summary", "subject": "all", "attrs": {"status64_count": "many"}}],
            }
        )
    )
    line = one_error_line(run_cli("analyze", str(bad)), 2)
    assert f"{bad}:$.facts[0].attrs.status64_count" in line and "is int, got str" in line


def test_nested_attribute_in_bundle(tmp_path: Path):
    bad = tmp_path / "nested.json"
    bad.write_text(
        json.dumps(
            {"format_version": 1, "facts": [{"kind": "answer", "subject": "q", "attrs": {"value": {"deep": 1}}}]}
        )
    )
    line = one_error_line(run_cli("analyze", str(bad)), 2)
    assert f"{bad}:$.facts[0].attrs.value" in line and "flat" in line


def test_unknown_fact_kind_in_bundle(tmp_path: Path):
    bad = tmp_path / "kind.json"
    bad.write_text(
        json.dumps(
            {
                "format_version": 1,
                "facts": [
                    {"kind": "answer", "subject": "q", "attrs": {"value": "no"}},
                    {"kind": "tmg.mood", "subject": "x", "attrs": {}},
                ],
            }
        )
    )
    line = one_error_line(run_cli("analyze", str(bad)), 2)
    assert f"{bad}:$.facts[1].kind" in line and "unknown fact kind 'tmg.mood'" in line


def test_future_bundle_version(tmp_path: Path):
    bad = tmp_path / "v9.json"
    bad.write_text(json.dumps({"format_version": 9, "facts": []}))
    line = one_error_line(run_cli("analyze", str(bad)), 2)
    assert "$.format_version" in line


def test_missing_bundle():
    line = one_error_line(run_cli("analyze", "/nonexistent/b.json"), 2)
    assert "/nonexistent/b.json" in line and "not found" in line


ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_yaml_alias_bomb_profile(tmp_path: Path):
    bomb = tmp_path / "profile.yaml"
    bomb.write_text(ALIAS_BOMB)
    line = one_error_line(run_cli("run", "--profile", str(bomb), "--no-input", timeout=20), 3)
    assert f"{bomb}:2:" in line and "aliases" in line


def test_yaml_alias_bomb_answers(tmp_path: Path):
    bomb = tmp_path / "answers.yaml"
    bomb.write_text(ALIAS_BOMB)
    line = one_error_line(run_cli("run", "--example", "seed", "--answers", str(bomb), timeout=20), 3)
    assert str(bomb) in line


def test_bad_answer_choice(tmp_path: Path):
    answers = tmp_path / "answers.yaml"
    answers.write_text("users-report-failures: maybe\n")
    line = one_error_line(run_cli("run", "--example", "seed", "--answers", str(answers)), 3)
    assert f"{answers}:1:" in line and "not a choice" in line


def test_bad_profile_field(tmp_path: Path):
    profile = tmp_path / "p.yaml"
    profile.write_text("published_names: [mail.example.com]\ninternal_adresses: [10.0.0.1]\n")
    line = one_error_line(run_cli("run", "--profile", str(profile), "--no-input"), 3)
    assert f"{profile}:2:" in line and "internal_adresses" in line


def test_unquoted_ipv6_address_in_a_profile_says_to_quote_it(tmp_path: Path):
    """`[::1]` is not a valid YAML flow list; the one error line says to quote the address."""
    profile = tmp_path / "p.yaml"
    profile.write_text("published_names: [mail.example.com]\ninternal_addresses: [fd00::11, ::1]\n")
    line = one_error_line(run_cli("run", "--profile", str(profile), "--no-input"), 3)
    assert line == (
        f"diagnose: error: {profile}:2: YAML syntax: did not find expected node content "
        '(quote IPv6 addresses: ["::1"], "[fd00::53]:53")'
    )
    profile.write_text("published_names: [mail.example.com]\ninternal_addresses: ['fd00::11', '::1:x']\n")
    line = one_error_line(run_cli("run", "--profile", str(profile), "--no-input"), 3)
    assert line == f"diagnose: error: {profile}:2: internal_addresses: '::1:x' is not an IP address"


def test_unknown_example():
    line = one_error_line(run_cli("run", "--example", "nope"), 2)
    assert "no example 'nope'" in line


def test_collect_never_imports_the_inference_engine(tmp_path: Path):
    bundle = tmp_path / "b.json"
    result = run_cli("collect", "--example", "seed", "-o", str(bundle), env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
    }
    assert "diagnose.collect" in imported and "diagnose.probes.capture.tcp" in imported  # the check itself works
    assert not {m for m in imported if m.startswith(("durable", "diagnose.engine", "diagnose.diagnosis"))}
    data = json.loads(bundle.read_text())
    assert data["rulebook_version"] and data["tool_version"]


def test_why_says_why_each_rule_fired_or_not():
    result = run_cli("run", "--example", "seed", "--why")
    assert result.returncode == 0, result.stderr
    lines = {
        line.split(":", 1)[0].split()[-1]: line
        for line in result.stdout.splitlines()
        if line.startswith(("  fired", "  silent", "  unknown"))
    }
    assert lines["dirty-close-by-design"].startswith("  fired")
    assert (
        "owa: no site.profile with published contains 'owa' (it is ['outlook-anywhere'])"
        in lines["exchange-fba-service-stopped"]
    )
    assert "users: no answer with value = 'yes' (it is 'no')" in lines["unexplained-user-impact"]
    assert "needs evidence that was not gathered: dns.resolution" in lines["name-resolution-mismatch"]
    considered = {r["rule"]: r for r in diagnose_json("run", "--example", "seed")["rules_considered"]}
    assert considered["tmg-logs-host-not-found"]["status"] == "silent"
    assert "host_not_found > 0 (it is 0)" in considered["tmg-logs-host-not-found"]["reason"]


def test_html_report_is_self_contained_and_escapes_evidence(tmp_path: Path):
    from html.parser import HTMLParser

    bundle = tmp_path / "evil.json"
    bundle.write_text(
        json.dumps(
            {
                "format_version": 1,
                "facts": [
                    {
                        "kind": "dns.resolution",
                        "subject": "<script>alert(1)</script>.example",
                        "attrs": {
                            "name": "<script>alert(1)</script>.example",
                            "role": "published",
                            "source": "dns",
                            "outcome": "ok",
                            "effective": True,
                            "matches_internal": False,
                            "addresses": ["203.0.113.9"],
                        },
                        "provenance": {"probe": "dns"},
                    }
                ],
            }
        )
    )
    result = run_cli("analyze", str(bundle), "--format", "html", "--why")
    assert result.returncode == 0, result.stderr
    page = result.stdout
    assert page.startswith("<!doctype html>") and "misconfiguration" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "src=" not in page and "<link" not in page  # nothing fetched from elsewhere

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.open: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag not in ("meta", "br"):
                self.open.append(tag)

        def handle_endtag(self, tag):
            assert self.open and self.open[-1] == tag, (tag, self.open[-3:])
            self.open.pop()

    parser = Tags()
    parser.feed(page)
    assert parser.open == []


@pytest.mark.parametrize(
    "option,content",
    [
        ("--capture", b"hello, not a capture\n"),
        ("--log", b"\x00\x01garbage\xff" * 50),
        ("--services-export", b"nothing to see\n"),
    ],
)
def test_a_named_input_that_is_not_what_it_claims_is_one_error_line(tmp_path: Path, option: str, content: bytes):
    bad = tmp_path / "input.bin"
    bad.write_bytes(content)
    line = one_error_line(run_cli("run", "--offline", "--no-input", option, str(bad)), 2)
    assert str(bad) in line


def test_missing_capture_is_an_error_not_a_silent_skip(tmp_path: Path):
    line = one_error_line(run_cli("run", "--offline", "--no-input", "--capture", str(tmp_path / "none.pcap")), 2)
    assert "none.pcap" in line and "not found" in line
