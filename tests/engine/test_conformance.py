"""durable_rules conformance: every defect in shared/knowledge/durable-rules-notes.md, checked
against the adapter, with the reference evaluator as the second opinion."""

from __future__ import annotations

import itertools
import random
import threading

import pytest

from diagnose.engine import create_engine
from diagnose.facts import make_fact
from tests.rulebook_util import rulebook

NEGATION = """\
id: fba-negation
title: status 64 without a stopped FBA
status: experimental
when:
  log: {kind: log.status_summary, status64_count: {gt: 0}}
  not:
    fba: {kind: service.state, name: MSExchangeFBA, state: stopped}
conclude: {cause: c1, certainty: 0.5, explain: "x"}
"""

JOIN_NEGATION = """\
id: join-negation
title: a DNS answer with no HOSTS entry for the same name
status: experimental
when:
  dns: {kind: dns.resolution, source: dns}
  not:
    hosts: {kind: dns.resolution, source: hosts, name: "$dns.name"}
conclude: {cause: c1, certainty: 0.5, explain: "x"}
"""


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    return rulebook(tmp_path_factory.mktemp("rb"), {"fba-negation": NEGATION, "join-negation": JOIN_NEGATION})


@pytest.fixture(scope="module", params=["durable", "reference"])
def engine(request, book):
    return create_engine(book, request.param)


def fired(result, rule_id):
    return [f for f in result.firings if f.rule_id == rule_id]


def test_negation_holds_in_every_assertion_order(engine):
    log = make_fact("log.status_summary", "all", "t", status64_count=3)
    stopped = make_fact("service.state", "cas/MSExchangeFBA", "t", name="MSExchangeFBA", state="stopped")
    other = make_fact("service.state", "cas/W3SVC", "t", name="W3SVC", state="running")
    running = make_fact("service.state", "cas/MSExchangeFBA", "t", name="MSExchangeFBA", state="running")
    for order in itertools.permutations([log, stopped, other]):
        assert fired(engine.run(list(order)), "fba-negation") == [], order
    for order in itertools.permutations([log, running, other]):
        assert len(fired(engine.run(list(order)), "fba-negation")) == 1, order


def test_negation_with_a_join_in_every_order(engine):
    dns_a = make_fact("dns.resolution", "a", "t", name="a.example", attrs={"source": "dns"})
    dns_b = make_fact("dns.resolution", "b", "t", name="b.example", attrs={"source": "dns"})
    hosts_a = make_fact("dns.resolution", "a", "t", name="a.example", attrs={"source": "hosts"})
    for order in itertools.permutations([dns_a, dns_b, hosts_a]):
        result = engine.run(list(order))
        bound = [dict(f.bindings)["dns"] for f in fired(result, "join-negation")]
        assert [order[i].attrs["name"] for i in bound] == ["b.example"], order


def test_string_never_compares_with_a_number(tmp_path):
    book = rulebook(
        tmp_path,
        {
            "big": """\
        id: big
        title: many
        status: experimental
        when:
          log: {kind: log.status_summary, status64_count: {gt: 100}}
        conclude: {cause: c1, certainty: 0.5, explain: "x"}
        """,
            "small": """\
        id: small
        title: few
        status: experimental
        when:
          log: {kind: log.status_summary, status64_count: {lt: 100}}
        conclude: {cause: c1, certainty: 0.5, explain: "x"}
        """,
        },
    )
    facts = [
        make_fact("log.status_summary", "s", "t", status64_count="50"),
        make_fact("log.status_summary", "e", "t", status64_count=""),
        make_fact("log.status_summary", "b", "t", status64_count=True),
        make_fact("log.status_summary", "n", "t", status64_count=150),
    ]
    for name in ("durable", "reference"):
        result = create_engine(book, name).run(facts)
        assert sorted((f.rule_id, f.bindings) for f in result.firings) == [("big", (("log", 3),))], name
        assert len(result.warnings) == 3


def test_exponent_floats_in_facts_and_rules(tmp_path):
    book = rulebook(
        tmp_path,
        {
            "tiny": """\
        id: tiny
        title: share above one in a million
        status: experimental
        when:
          log: {kind: log.status_summary, status64_share: {gt: 1.0e-6}}
        conclude: {cause: c1, certainty: 0.5, explain: "x"}
        """
        },
    )
    values = [200.0, 1e-05, 5e-07, 1e20, 1.5e-3, 3e-06]
    facts = [make_fact("log.status_summary", f"s{i}", "t", status64_share=v) for i, v in enumerate(values)]
    expected = sorted(i for i, v in enumerate(values) if v > 1e-6)
    for name in ("durable", "reference"):
        result = create_engine(book, name).run(facts)
        assert sorted(dict(f.bindings)["log"] for f in result.firings) == expected, name


def test_ten_thousand_facts_none_lost(tmp_path):
    book = rulebook(
        tmp_path,
        {
            "every": """\
        id: every
        title: every summary
        status: experimental
        when:
          log: {kind: log.status_summary, status64_count: {ge: 0}}
        conclude: {cause: c1, certainty: 0.5, explain: "x"}
        """
        },
    )
    # 9,000 distinct facts and 1,000 exact duplicates of some of them: durable's content hash would
    # reject the duplicates, and 32-bit id hashes collide at this scale.
    facts = [
        make_fact("log.status_summary", f"server:{i}", "t", status64_count=i, server=f"10.0.{i // 256}.{i % 256}")
        for i in range(9000)
    ]
    facts += facts[:1000]
    result = create_engine(book, "durable").run(facts)
    assert len(result.firings) == 10_000
    assert {dict(f.bindings)["log"] for f in result.firings} == set(range(10_000))


def test_diagnoses_are_isolated_and_sids_are_freed(book):
    engine = create_engine(book, "durable")
    log = make_fact("log.status_summary", "all", "t", status64_count=1)
    stopped = make_fact("service.state", "s", "t", name="MSExchangeFBA", state="stopped")
    # 1,100 diagnoses: more than durable's 1,024 live sessions, so sessions must be deleted;
    # a fact in one diagnosis must never block or join in the next.
    for n in range(1100):
        facts = [log, stopped] if n % 2 else [log]
        got = fired(engine.run(facts), "fba-negation")
        assert len(got) == (0 if n % 2 else 1), n


def test_empty_diagnosis_does_not_crash(book):
    engine = create_engine(book, "durable")
    for _ in range(200):
        assert engine.run([]).firings == ()


def test_threads_share_the_engine_safely(book):
    engine = create_engine(book, "durable")
    log = make_fact("log.status_summary", "all", "t", status64_count=1)
    stopped = make_fact("service.state", "s", "t", name="MSExchangeFBA", state="stopped")
    errors: list[str] = []

    def worker(k: int) -> None:
        for n in range(40):
            block = (k + n) % 2 == 1
            got = fired(engine.run([log, stopped] if block else [log]), "fba-negation")
            if len(got) != (0 if block else 1):
                errors.append(f"thread {k} run {n}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


RANDOM_RULES = {
    "r-num": """\
        id: r-num
        title: numbers
        status: experimental
        when:
          log: {kind: log.status_summary, status64_count: {ge: 3, lt: 8}, status64_share: {gt: 0.25}}
        conclude: {cause: c1, certainty: 0.5, explain: "x"}
        """,
    "r-str": """\
        id: r-str
        title: strings
        status: experimental
        when:
          svc: {kind: service.state, name: {matches: "MSExchange*"}, state: {in: [stopped, paused]}, host: {contains: "cas"}}
        conclude: {cause: c1, certainty: 0.5, explain: "x"}
        """,
    "r-list": """\
        id: r-list
        title: lists and existence
        status: experimental
        when:
          dns: {kind: dns.resolution, addresses: {contains: 10.0.0.1}, server: {exists: false}, matches_internal: true}
        conclude: {cause: c1, certainty: 0.5, explain: "x"}
        """,
    "r-join": """\
        id: r-join
        title: joins
        status: experimental
        when:
          a: {kind: service.state, state: stopped}
          b: {kind: service.state, host: "$a.host", name: {ne: "$a.name"}}
          any:
            c: {kind: log.status_summary, status64_count: {gt: "$x.dummy"}}
            d: {kind: host.tcp_states, time_wait: {ge: 2}}
        conclude: {cause: c1, certainty: 0.5, explain: "x"}
        """.replace('status64_count: {gt: "$x.dummy"}', "status64_count: {gt: 5}"),
    "r-not": """\
        id: r-not
        title: negation with join
        status: experimental
        when:
          a: {kind: service.state, state: {ne: running}}
          not:
            n: {kind: service.state, host: "$a.host", state: running}
            m: {kind: host.tcp_states, close_wait: {gt: 2}}
        conclude: {cause: c1, certainty: 0.5, explain: "x"}
        """,
}


def _random_facts(rng: random.Random) -> list:
    facts = []
    for _ in range(rng.randint(0, 9)):
        kind = rng.choice(["log.status_summary", "service.state", "dns.resolution", "host.tcp_states"])
        if kind == "log.status_summary":
            attrs = {
                "status64_count": rng.choice([0, 2, 3, 5, 7, 8, 9, "5"]),
                "status64_share": rng.choice([0.1, 0.25, 0.5, 1e-05, 2]),
            }
        elif kind == "service.state":
            attrs = {
                "name": rng.choice(["MSExchangeFBA", "msexchangeIS", "W3SVC", "MSExchange"]),
                "state": rng.choice(["stopped", "running", "paused"]),
                "host": rng.choice(["cas1", "CAS2", "mbx1", "xcasx"]),
            }
        elif kind == "dns.resolution":
            attrs = {
                "addresses": rng.choice([[], ["10.0.0.1"], ["10.0.0.10", "10.0.0.1"], ["10.0.0.10"]]),
                "matches_internal": rng.choice([True, False, 1]),
            }
            if rng.random() < 0.3:
                attrs["server"] = "127.0.0.1"
        else:
            attrs = {"time_wait": rng.choice([0, 2, 3]), "close_wait": rng.choice([0, 3])}
        attrs = {k: v for k, v in attrs.items() if rng.random() < 0.9}
        facts.append(make_fact(kind, f"s{len(facts)}", "t", **attrs))
    return facts


def test_engines_agree_on_random_evidence(tmp_path):
    book = rulebook(tmp_path, RANDOM_RULES)
    durable, reference = create_engine(book, "durable"), create_engine(book, "reference")
    rng = random.Random(64)
    fired_rules = set()
    for n in range(1500):
        facts = _random_facts(rng)
        a = sorted(f.key() for f in durable.run(facts).firings)
        b = sorted(f.key() for f in reference.run(facts).firings)
        assert a == b, (n, facts)
        fired_rules |= {k[0] for k in a}
    assert fired_rules == set(RANDOM_RULES)  # every construct was exercised with a match


def test_a_fact_may_pass_more_than_64_sibling_conditions(tmp_path):
    # durable walks its alpha network with a 64-entry stack (error 303 beyond it); the adapter
    # splits the rulebook into partitions so that this cannot happen.
    rules = {
        f"t{n}": f"""\
        id: t{n}
        title: threshold {n}
        status: experimental
        when:
          log: {{kind: log.status_summary, status64_count: {{gt: {n}}}}}
        conclude: {{cause: c1, certainty: 0.1, explain: "x"}}
        """
        for n in range(150)
    }
    book = rulebook(tmp_path, rules)
    facts = [
        make_fact("log.status_summary", "all", "t", status64_count=1000),
        make_fact("log.status_summary", "some", "t", status64_count=75),
    ]
    for name in ("durable", "reference"):
        result = create_engine(book, name).run(facts)
        assert len(result.firings) == 150 + 75, name


def test_fact_json_writer_matches_the_general_one():
    import json

    from diagnose.engine.durable import dumps, dumps_flat

    samples = [
        {},
        {"a": 1e-05},
        {"kind": "x", "v": 1e20, "s": "1e5 \u00e9", "l": ("a", "b"), "b": True, "n": -3},
        {"f": 0.1, "g": -2.5e-300},
    ]
    for message in samples:
        flat = dumps_flat(message)
        assert json.loads(flat) == json.loads(dumps(message)) == json.loads(json.dumps(message))
        for token in ("e-05", "e+20", "e-300"):
            if token in flat:  # a '.' in every exponent mantissa, as durable's parser needs
                assert f".0{token}" in flat or f".5{token}" in flat
