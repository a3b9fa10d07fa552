"""durable_rules against the reference evaluator on the shipped rulebook and real evidence.

Every shipped rule runs, through both engines, over every bundled example, the corpus captures and
logs in ../shared/corpus read by the real probes (`diagnose collect`), captures and TMG logs generated
here in the real formats, and bundles mixed from the rules' own test facts. The two engines must
give the same firings with the same facts bound to the same bindings.

The `not` cases: a negated binding that the fact bound to a positive binding satisfies too (issue
11 item 2: `server-resets-mid-response` fired under durable_rules on one teardown summary with both
`reset_by_server` and `refused`), in every assertion order.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from pathlib import Path

import pytest

from diagnose.cli.common import load_rules
from diagnose.diagnosis import analyze, diagnosis_facts
from diagnose.engine import create_engine
from diagnose.facts import EvidenceBundle, Fact, load_bundle, make_fact
from diagnose.report import render
from tests.conftest import CORPUS, REPO, run_cli
from tests.engine import timeless
from tests.probes.capture import synth
from tests.rulebook_util import rulebook

TMG, CAS = "10.1.4.98", "10.1.5.11"
START = 1_714_816_800  # 2024-05-04 10:00:00 UTC
FW_FIELDS = [
    "computer",
    "date",
    "time",
    "IP protocol",
    "source",
    "destination",
    "original client IP",
    "source network",
    "destination network",
    "action",
    "status",
    "rule",
    "application protocol",
    "bytes sent",
    "bytes received",
    "connection time",
]


@pytest.fixture(scope="module")
def shipped():
    book = load_rules()
    return book, create_engine(book, "durable"), create_engine(book, "reference")


def firings(engine, facts) -> list:
    return sorted(f.key() for f in engine.run(list(facts)).firings)


def assert_same(shipped, bundle: EvidenceBundle, what: str) -> set[str]:
    """Both engines give the same firings (rule and bound facts), and the same report; returns the
    rules that fired."""
    book, durable, reference = shipped
    facts = diagnosis_facts(bundle)
    a, b = firings(durable, facts), firings(reference, facts)
    assert a == b, f"{what}: only durable {sorted(set(a) - set(b))[:5]}, only reference {sorted(set(b) - set(a))[:5]}"
    reports = []
    for engine in (durable, reference):
        report = json.loads(render(analyze(bundle, book, engine), "json"))
        parts = ("verdict", "headline", "causes", "ruled_out", "decided_by", "unknowns", "questions")
        reports.append(timeless({k: report[k] for k in parts if k in report}))
    assert reports[0] == reports[1], what
    return {key[0] for key in a}


def collected(tmp_path: Path, name: str, *args: str) -> EvidenceBundle:
    out = tmp_path / f"{name}.json"
    result = run_cli("collect", "--offline", "--quiet", *args, "-o", str(out))
    assert result.returncode == 0, f"{name}: {result.stderr}"
    return load_bundle(out)


# ----------------------------------------------------------------------------- the examples


@pytest.mark.parametrize("name", sorted(p.parent.name for p in (REPO / "examples").glob("*/example.yaml")))
def test_every_example(shipped, tmp_path, name):
    fired = assert_same(shipped, collected(tmp_path, name, "--example", name), name)
    assert fired  # the example exercises rules


# ------------------------------------------------------------------------------- the corpus


def corpus_inputs() -> list[tuple[str, list[str]]]:
    if not CORPUS.is_dir():
        return []
    cases = [(p.name, ["--capture", str(p)]) for p in sorted((CORPUS / "pcaps").glob("*.pcap*"))]
    logs = sorted((CORPUS / "tmg-logs").glob("*")) + sorted((CORPUS / "iis-logs").glob("*.log"))
    cases += [(p.name, ["--log", str(p)]) for p in logs]
    firewall = CORPUS / "tmg-logs" / "isa2004_firewall_w3c_ISALOG_FWS.w3c"
    teardown = CORPUS / "pcaps" / "cs_tcp_teardown.pcapng"
    cases.append(("firewall log with a capture", ["--log", str(firewall), "--capture", str(teardown)]))
    return cases


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not present")
def test_the_corpus_through_the_probes(shipped, tmp_path):
    cases = corpus_inputs()
    assert len(cases) >= 10
    for name, args in cases:
        assert_same(shipped, collected(tmp_path, name.replace(" ", "-"), *args), name)


# ------------------------------------------------------------------------ generated bundles


def fw_row(
    when: float, src: str, dst: str, status: str = "0x80070040", action: str = "Failed Connection Attempt"
) -> str:
    t = time.gmtime(when)
    values = {
        "computer": "TMG01",
        "date": time.strftime("%Y-%m-%d", t),
        "time": time.strftime("%H:%M:%S", t),
        "IP protocol": "TCP",
        "source": src,
        "destination": dst,
        "original client IP": src.rsplit(":", 1)[0],
        "source network": "Local Host",
        "destination network": "Internal",
        "action": action,
        "status": status,
        "rule": "Publish OWA",
        "application protocol": "HTTPS",
        "bytes sent": "517",
        "bytes received": "1400",
        "connection time": "1500",
    }
    return "\t".join(values[f] for f in FW_FIELDS)


def generated_site(root: Path, seed: int) -> list[str]:
    """A TMG-to-CAS capture (pcap) of a random mix of teardowns, and a W3C firewall log with a
    Status 64 entry for some of its connections; the `collect` arguments that read them."""
    rng = random.Random(seed)
    names = sorted(synth.SCENARIOS)
    segments: list[synth.Segment] = []
    rows = []
    for n in range(rng.randint(5, 40)):
        scenario = rng.choice(names)
        at = START + 2.0 * n
        segments += synth.script_segments(synth.SCENARIOS[scenario], (TMG, 30000 + n), (CAS, 443), at, n, gap=0.01)
        if rng.random() < 0.7:
            status = "0x80070040" if rng.random() < 0.8 else "0x0"
            rows.append(fw_row(at + 0.5, f"{TMG}:{30000 + n}", f"{CAS}:443", status))
    capture = synth.write_file(
        root / f"tmg{seed}.pcap", "pcap", synth.records_for(sorted(segments, key=lambda s: s.ts))
    )
    log = root / f"ISALOG_20240504_FWS_{seed:03d}.w3c"
    log.write_text(
        "#Software: Microsoft Forefront Threat Management Gateway 2010\n#Version: 1.0\n"
        "#Date: 2024-05-04 09:00:00\n#Fields: " + "\t".join(FW_FIELDS) + "\n" + "".join(r + "\n" for r in rows),
        encoding="utf-8",
    )
    return ["--capture", str(capture), "--log", str(log), "--tmg", TMG]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_captures_and_logs(shipped, tmp_path, seed):
    assert_same(shipped, collected(tmp_path, f"site{seed}", *generated_site(tmp_path, seed)), f"seed {seed}")


def test_generated_lossy_capture(shipped, tmp_path):
    segments, _ = synth.lossy(30, seed=5, client=TMG, server=CAS)
    capture = synth.write_file(tmp_path / "lossy.pcap", "pcap", synth.records_for(segments))
    assert_same(shipped, collected(tmp_path, "lossy", "--capture", str(capture), "--tmg", TMG), "lossy")


def mixed_bundles(book, count: int, seed: int) -> list[list[Fact]]:
    """Bundles mixed from the facts of the rules' inline tests: several tests' facts together, with
    some fields swapped between facts of the same kind, so that rules meet evidence written for
    other rules (and one fact can satisfy a positive and a negated binding at once)."""
    rng = random.Random(seed)
    pool = [fact for rule in book.rules for test in rule.tests for fact in test.facts]
    by_kind: dict[str, list[Fact]] = {}
    for fact in pool:
        by_kind.setdefault(fact.kind, []).append(fact)
    bundles = []
    for _ in range(count):
        facts = []
        for fact in rng.sample(pool, rng.randint(1, 12)):
            attrs = dict(fact.attrs)
            donor = rng.choice(by_kind[fact.kind])
            for name, value in donor.attrs.items():
                if rng.random() < 0.3:
                    attrs[name] = value
            facts.append(make_fact(fact.kind, fact.subject, "mixed", attrs=attrs))
        bundles.append(facts)
    return bundles


def test_bundles_mixed_from_the_rule_tests(shipped):
    book, _, _ = shipped
    fired: set[str] = set()
    for n, facts in enumerate(mixed_bundles(book, 400, 11)):
        fired |= assert_same(shipped, EvidenceBundle(facts=tuple(facts)), f"mixed bundle {n}: {facts}")
    tested = {rule.id for rule in book.rules if any(t.expect.fires for t in rule.tests)}
    assert len(fired & tested) >= 0.8 * len(tested)  # most rules fired somewhere, so firings were compared


def test_every_rule_test_in_every_assertion_order(shipped):
    """Each inline test's facts, in every order (up to 24 of them), give the same firings in both
    engines, and the same as in the first order."""
    book, durable, reference = shipped
    for rule in book.rules:
        for test in rule.tests:
            orders = list(itertools.islice(itertools.permutations(range(len(test.facts))), 24))
            expected = None
            for order in orders:
                facts = [test.facts[i] for i in order]
                a, b = firings(durable, facts), firings(reference, facts)
                assert a == b, (rule.id, test.name, order)
                # the same facts bound, whatever the order
                got = sorted((rid, tuple((n, order[i]) for n, i in bound)) for rid, bound in a)
                expected = expected if expected is not None else got
                assert got == expected, (rule.id, test.name, order)


# ------------------------------------------------------- `not` over the fact of a positive binding

SAME_FACT = {
    "pos-then-not": """\
        id: pos-then-not
        title: resets, none refused
        status: experimental
        when:
          cap: {kind: capture.teardown_summary, scope: leg, leg: server, reset_by_server: {gt: 0}}
          not:
            refused: {kind: capture.teardown_summary, scope: leg, leg: server, refused: {gt: 0}}
        conclude: {cause: c1, certainty: 0.5, explain: "x"}
        """,
    "not-then-pos": """\
        id: not-then-pos
        title: none refused, resets
        status: experimental
        when:
          not:
            refused: {kind: capture.teardown_summary, scope: leg, leg: server, refused: {gt: 0}}
          cap: {kind: capture.teardown_summary, scope: leg, leg: server, reset_by_server: {gt: 0}}
        conclude: {cause: c1, certainty: 0.5, explain: "x"}
        """,
    "joined-not": """\
        id: joined-not
        title: a service not running with no running service on its host
        status: experimental
        when:
          svc: {kind: service.state, state: {ne: stopped}}
          not:
            up: {kind: service.state, host: "$svc.host", state: running}
        conclude: {cause: c1, certainty: 0.5, explain: "x"}
        """,
    "two-positives": """\
        id: two-positives
        title: two different summaries
        status: experimental
        when:
          a: {kind: capture.teardown_summary, reset_by_server: {gt: 0}}
          b: {kind: capture.teardown_summary, refused: {gt: 0}}
        conclude: {cause: c1, certainty: 0.5, explain: "x"}
        """,
}


def summary(subject: str, **attrs: object) -> Fact:
    return make_fact("capture.teardown_summary", subject, "t", attrs={"scope": "leg", "leg": "server", **attrs})


@pytest.fixture(scope="module")
def same_fact_engines(tmp_path_factory):
    book = rulebook(tmp_path_factory.mktemp("same"), SAME_FACT)
    return create_engine(book, "durable"), create_engine(book, "reference")


@pytest.mark.parametrize(
    "facts,expected",
    [
        # one fact that both resets and refuses: the `not` sees it, nothing fires (durable_rules fired)
        ([summary("both", refused=48, reset_by_server=48)], {}),
        # with a second fact that only resets: still blocked by the first
        (
            [
                summary("both", refused=48, reset_by_server=48),
                summary("resets", refused=0, reset_by_server=3),
                summary("other", scope="total", reset_by_server=9),
            ],
            {"two-positives": 2},
        ),
        # no fact refuses: the resetting facts fire
        (
            [summary("resets", refused=0, reset_by_server=3), summary("other", scope="total", reset_by_server=9)],
            {"pos-then-not": 1, "not-then-pos": 1},
        ),
    ],
)
def test_not_sees_the_fact_bound_to_a_positive_binding_in_every_order(same_fact_engines, facts, expected):
    durable, reference = same_fact_engines
    for order in itertools.permutations(range(len(facts))):
        given = [facts[i] for i in order]
        a, b = firings(durable, given), firings(reference, given)
        assert a == b, order
        counts: dict[str, int] = {}
        for rule_id, _ in a:
            counts[rule_id] = counts.get(rule_id, 0) + 1
        assert counts == expected, order


def test_a_joined_not_sees_the_fact_it_joins_to(same_fact_engines):
    durable, reference = same_fact_engines
    running = make_fact("service.state", "cas1/W3SVC", "t", name="W3SVC", state="running", host="cas1")
    paused = make_fact("service.state", "cas2/W3SVC", "t", name="W3SVC", state="paused", host="cas2")
    stopped = make_fact("service.state", "cas2/IIS", "t", name="IIS", state="stopped", host="cas2")
    facts = [running, paused, stopped]
    for order in itertools.permutations(range(3)):
        given = [facts[order[i]] for i in range(3)]
        a, b = firings(durable, given), firings(reference, given)
        assert a == b, order
        # cas1's running service blocks itself; cas2's paused one has no running service beside it
        assert [(rid, [given[i] for _, i in bound]) for rid, bound in a] == [("joined-not", [paused])], order


def test_the_shipped_rule_of_the_report(shipped):
    """The case of issue 11 item 2, on the shipped rulebook, in both assertion orders with the
    refused-connections rule's own fact."""
    _, durable, reference = shipped
    both = summary("leg:server", refused=48, reset_by_server=48)
    total = summary("total", scope="total", refused=48, reset_by_server=48)
    for given in ([both], [both, total], [total, both]):
        a, b = firings(durable, given), firings(reference, given)
        assert a == b
        assert "server-resets-mid-response" not in {rid for rid, _ in a}
        assert "server-leg-connections-refused" in {rid for rid, _ in a}
