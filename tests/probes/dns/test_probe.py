"""The dns probe against real DNS servers on loopback (tests/servers.py), with real HOSTS files."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diagnose.collect import plan_check
from diagnose.facts import Fact
from diagnose.kinds import fact_kinds
from diagnose.probes import ProbeContext, run_probe
from diagnose.profile import SiteProfile
from tests.conftest import run_cli
from tests.servers import LOOPBACK, LOOPBACK6, LOOPBACKS, DnsServer, requires_ipv6

INTERNAL = "127.0.0.10"
PUBLIC = "127.0.0.200"  # stands for the published name's public address (a hairpin back to TMG)

SITE_ZONE = {
    "mail.contoso.com": {"A": [PUBLIC]},  # published name: resolves to the outside
    "webmail.contoso.com": {"CNAME": "cas01.contoso.local"},  # certificate FQDN: an alias of the CAS
    "cas01.contoso.local": {"A": [INTERNAL]},  # internal name (the To tab)
    "v6.contoso.com": {"AAAA": ["::1"]},
    "txt.contoso.com": {"TXT": ['"v=spf1 -all"']},
    "big.contoso.com": {"A": [f"127.0.0.{i}" for i in range(1, 40)]},
    "loop1.contoso.com": {"CNAME": "loop2.contoso.com"},
    "loop2.contoso.com": {"CNAME": "loop1.contoso.com"},
}


@pytest.fixture(scope="module", params=LOOPBACKS)
def site_dns(request: pytest.FixtureRequest) -> Iterator[DnsServer]:
    """The site's DNS server, on 127.0.0.1 and on ::1 (given as `[::1]:PORT`): every test using it runs on both."""
    with DnsServer(
        SITE_ZONE, rcodes={"autodiscover.contoso.com": "SERVFAIL"}, truncate=["big.contoso.com"], host=request.param
    ) as server:
        yield server


def probe_dns(
    spec: dict[str, Any], profile: SiteProfile | None = None, deadline: float | None = None
) -> tuple[list[Fact], Any]:
    ctx = ProbeContext(deadline=deadline)
    params = plan_check("dns", {"use_hosts": False, "timeout": 1.0, **spec}, profile)[1]
    result, _run = run_probe("dns", ctx, params, ("dns.resolution", "dns.consistency"))
    fact_kinds().check(result.facts, "dns probe")  # every fact fits the declared kinds
    return list(result.facts), result


def resolution(facts: list[Fact], name: str, source: str = "dns", server: str | None = None) -> dict[str, Any]:
    found = [
        f
        for f in facts
        if f.kind == "dns.resolution"
        and f.subject == name
        and f.attrs["source"] == source
        and (server is None or f.attrs["server"] == server)
    ]
    assert len(found) == 1, found
    return dict(found[0].attrs)


def consistency(facts: list[Fact]) -> dict[str, Any]:
    (fact,) = [f for f in facts if f.kind == "dns.consistency"]
    return dict(fact.attrs)


def test_published_name_and_certificate_fqdn_resolve_differently(site_dns: DnsServer) -> None:
    facts, result = probe_dns(
        {
            "names": ["mail.contoso.com"],
            "certificate_fqdn": "webmail.contoso.com",
            "internal_name": "cas01.contoso.local",
            "servers": [site_dns.address],
            "expect": [INTERNAL],
        }
    )
    assert result.status.value == "complete"
    mail = resolution(facts, "mail.contoso.com")
    assert (mail["outcome"], mail["addresses"], mail["matches_internal"], mail["role"], mail["effective"]) == (
        "ok",
        (PUBLIC,),
        False,
        "published",
        True,
    )
    cert = resolution(facts, "webmail.contoso.com")
    assert cert["addresses"] == (INTERNAL,)
    assert cert["cname_chain"] == ("cas01.contoso.local",)
    assert cert["matches_internal"] is True and cert["role"] == "certificate"
    summary = consistency(facts)
    assert summary["consistent"] is False
    assert summary["all_internal"] is False
    assert summary["mismatched"] == ("mail.contoso.com",)
    assert summary["published_match_certificate"] is False
    assert summary["unresolved"] == ()
    assert "mail.contoso.com -> 127.0.0.200" in summary["detail"]
    # the probe asked the server for both address families of every name
    asked = {(name, rdtype) for _transport, name, rdtype in site_dns.queries}
    assert {("mail.contoso.com", "A"), ("mail.contoso.com", "AAAA"), ("webmail.contoso.com", "A")} <= asked


@pytest.mark.parametrize(
    ("name", "outcome"),
    [
        ("legacy.contoso.com", "nxdomain"),
        ("autodiscover.contoso.com", "servfail"),
        ("txt.contoso.com", "no-answer"),
        ("loop1.contoso.com", "error"),
    ],
)
def test_failure_outcomes(site_dns: DnsServer, name: str, outcome: str) -> None:
    facts, _ = probe_dns({"names": [name], "servers": [site_dns.address], "expect": [INTERNAL]})
    got = resolution(facts, name)
    assert got["outcome"] == outcome
    assert got["addresses"] == ()
    # not resolving is not resolving to the internal server; a broken server is unknown
    assert got.get("matches_internal") == ({"nxdomain": False, "no-answer": False}.get(outcome))
    assert consistency(facts)["unresolved"] == (name,)


@pytest.mark.parametrize("host", LOOPBACKS)
def test_refused_and_timeout(host: str) -> None:
    with DnsServer({}, refuse_all=True, host=host) as refusing, DnsServer({}, silent=["*"], host=host) as silent:
        started = time.monotonic()
        facts, _ = probe_dns(
            {"names": ["mail.contoso.com"], "servers": [refusing.address, silent.address], "timeout": 0.5}
        )
        elapsed = time.monotonic() - started
    assert resolution(facts, "mail.contoso.com", server=refusing.address)["outcome"] == "refused"
    timed_out = resolution(facts, "mail.contoso.com", server=silent.address)
    assert timed_out["outcome"] == "timeout"
    assert "did not answer" in timed_out["detail"]
    assert elapsed < 3  # A and AAAA at both servers were asked side by side (0.5 s each)


def test_ipv6_only_name_and_truncated_answer_over_tcp(site_dns: DnsServer) -> None:
    facts, _ = probe_dns({"names": ["v6.contoso.com", "big.contoso.com"], "servers": [site_dns.address]})
    assert resolution(facts, "v6.contoso.com")["addresses"] == ("::1",)
    big = resolution(facts, "big.contoso.com")
    assert len(big["addresses"]) == 39
    assert ("tcp", "big.contoso.com", "A") in site_dns.queries  # the TC bit sent the probe to TCP


@pytest.mark.parametrize("host", LOOPBACKS)
def test_cname_chain_followed_across_answers(host: str) -> None:
    zone = {
        "owa.contoso.com": {"CNAME": "web.contoso.com"},
        "web.contoso.com": {"CNAME": "cas01.contoso.local"},
        "cas01.contoso.local": {"A": [INTERNAL]},
    }
    with DnsServer(zone, chase=False, host=host) as server:
        facts, _ = probe_dns({"names": ["owa.contoso.com"], "servers": [server.address], "expect": [INTERNAL]})
        got = resolution(facts, "owa.contoso.com")
        assert got["cname_chain"] == ("web.contoso.com", "cas01.contoso.local")
        assert got["addresses"] == (INTERNAL,) and got["matches_internal"] is True
        assert [q[1] for q in server.queries if q[2] == "A"] == [
            "owa.contoso.com",
            "web.contoso.com",
            "cas01.contoso.local",
        ]


def test_split_brain_between_configured_servers(site_dns: DnsServer) -> None:
    with DnsServer({"mail.contoso.com": {"A": [INTERNAL]}}, host=site_dns.host) as second:
        facts, _ = probe_dns(
            {"names": ["mail.contoso.com"], "servers": [site_dns.address, second.address], "expect": [INTERNAL]}
        )
    first = resolution(facts, "mail.contoso.com", server=site_dns.address)
    other = resolution(facts, "mail.contoso.com", server=second.address)
    assert first["addresses"] == (PUBLIC,) and first["effective"] is True  # the first server settles it
    assert other["addresses"] == (INTERNAL,) and other["effective"] is False
    summary = consistency(facts)
    assert summary["split_brain"] == ("mail.contoso.com",)
    assert summary["mismatched"] == ("mail.contoso.com",)


@pytest.mark.parametrize("host", LOOPBACKS)
def test_next_server_is_used_when_the_first_does_not_answer(host: str) -> None:
    with DnsServer({}, silent=["*"], host=host) as dead, DnsServer(
        {"mail.contoso.com": {"A": [INTERNAL]}}, host=host
    ) as alive:
        facts, _ = probe_dns(
            {
                "names": ["mail.contoso.com"],
                "servers": [dead.address, alive.address],
                "expect": [INTERNAL],
                "timeout": 0.5,
            }
        )
    assert resolution(facts, "mail.contoso.com", server=dead.address)["effective"] is False
    assert resolution(facts, "mail.contoso.com", server=alive.address)["effective"] is True
    assert consistency(facts)["all_internal"] is True


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_hosts_file_wins_over_dns(site_dns: DnsServer, tmp_path: Path, newline: str) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_bytes(
        newline.join(
            [
                "# TMG fix for the published name",
                "127.0.0.1 localhost",
                f"{INTERNAL}  mail.contoso.com  webmail.contoso.com   # CAS",
                "",
            ]
        ).encode("utf-8")
    )
    facts, result = probe_dns(
        {
            "names": ["mail.contoso.com"],
            "certificate_fqdn": "webmail.contoso.com",
            "internal_name": "cas01.contoso.local",
            "servers": [site_dns.address],
            "hosts_file": str(hosts),
            "use_hosts": True,
            "expect": [INTERNAL],
        }
    )
    from_hosts = resolution(facts, "mail.contoso.com", source="hosts")
    assert (from_hosts["outcome"], from_hosts["addresses"], from_hosts["effective"]) == ("ok", (INTERNAL,), True)
    assert from_hosts["server"] == str(hosts)
    assert resolution(facts, "mail.contoso.com")["effective"] is False  # DNS still says PUBLIC, but is not used
    assert resolution(facts, "cas01.contoso.local", source="hosts")["outcome"] == "not-listed"
    fact = next(f for f in facts if f.subject == "mail.contoso.com" and f.attrs["source"] == "hosts")
    assert fact.provenance.location == "line 3"
    assert result.excerpts[f"{hosts}:3"].startswith(f"{INTERNAL}  mail.contoso.com")
    summary = consistency(facts)
    assert summary["all_internal"] is True and summary["consistent"] is True


def test_profile_supplies_expected_addresses_and_servers(site_dns: DnsServer) -> None:
    profile = SiteProfile(internal_addresses=(INTERNAL,), dns_servers=(site_dns.address,))
    facts, _ = probe_dns({"internal_name": "cas01.contoso.local"}, profile=profile)
    assert resolution(facts, "cas01.contoso.local")["matches_internal"] is True


def test_template_leftovers_count_as_not_given(site_dns: DnsServer) -> None:
    facts, _ = probe_dns(
        {
            "names": ["mail.contoso.com"],
            "certificate_fqdn": "",
            "internal_name": None,
            "hosts_file": "",
            "servers": [site_dns.address],
            "expect": [],
        }
    )
    assert [f.subject for f in facts if f.kind != "dns.address"] == ["mail.contoso.com", "names"]
    assert "matches_internal" not in facts[0].attrs  # no internal addresses: unknown, not false
    addresses = [f for f in facts if f.kind == "dns.address"]
    assert addresses and all("internal" not in f.attrs for f in addresses)  # unknown too


def test_nothing_to_resolve_is_unavailable() -> None:
    _, result = probe_dns({"names": []})
    assert result.status.value == "unavailable"
    assert "no names" in result.reason


def test_cli_dns_json(site_dns: DnsServer, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_bytes(f"{INTERNAL}\tcas01.contoso.local\r\n".encode("utf-16"))
    proc = run_cli(
        "probe",
        "dns",
        "mail.contoso.com",
        "--internal-name",
        "cas01.contoso.local",
        "--dns-server",
        site_dns.address,
        "--hosts-file",
        str(hosts),
        "--expect",
        INTERNAL,
        "--format",
        "json",
        "--timeout",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["probe"]["status"] == "complete"
    effective = {
        f["subject"]: f["attrs"] for f in out["facts"] if f["kind"] == "dns.resolution" and f["attrs"]["effective"]
    }
    assert effective["mail.contoso.com"]["addresses"] == [PUBLIC]
    assert effective["cas01.contoso.local"]["source"] == "hosts"


# ------------------------------------------------------------------------------------------ IPv6

# The site over IPv6: the CAS at ::1 (and at 127.0.0.10 over IPv4), the published name at the public
# addresses of both families (a hairpin to TMG).
V6_ZONE = {
    "mail.contoso.com": {"A": [PUBLIC], "AAAA": ["2001:db8::10"]},
    "webmail.contoso.com": {"CNAME": "cas01.contoso.local"},
    "cas01.contoso.local": {"A": [INTERNAL], "AAAA": [LOOPBACK6]},
    "v4only.contoso.com": {"A": [INTERNAL]},
}


@requires_ipv6
def test_aaaa_and_a_answers_against_an_ipv6_internal_address() -> None:
    """With the internal server known by its IPv6 address, the AAAA answers decide; a name with only an A
    record does not resolve to the server TMG reaches over IPv6."""
    with DnsServer(V6_ZONE, host=LOOPBACK6) as server:
        facts, result = probe_dns(
            {
                "names": ["mail.contoso.com", "v4only.contoso.com"],
                "certificate_fqdn": "webmail.contoso.com",
                "internal_name": "cas01.contoso.local",
                "servers": [server.address],
                "expect": [LOOPBACK6],
            }
        )
        asked = {(name, rdtype) for _transport, name, rdtype in server.queries}
    assert result.status.value == "complete"
    assert {("mail.contoso.com", "A"), ("mail.contoso.com", "AAAA"), ("cas01.contoso.local", "AAAA")} <= asked
    mail = resolution(facts, "mail.contoso.com", server=f"[::1]:{server.port}")
    assert (mail["outcome"], mail["addresses"], mail["matches_internal"]) == ("ok", (PUBLIC, "2001:db8::10"), False)
    cas = resolution(facts, "cas01.contoso.local")
    assert (cas["addresses"], cas["matches_internal"], cas["effective"]) == ((INTERNAL, LOOPBACK6), True, True)
    web = resolution(facts, "webmail.contoso.com")
    assert (web["cname_chain"], web["matches_internal"]) == (("cas01.contoso.local",), True)
    assert resolution(facts, "v4only.contoso.com")["matches_internal"] is False
    summary = consistency(facts)
    assert summary["mismatched"] == ("mail.contoso.com", "v4only.contoso.com")
    assert summary["expected"] == (LOOPBACK6,)
    assert f"mail.contoso.com -> {PUBLIC}, 2001:db8::10 (DNS [::1]:{server.port})" in summary["detail"]


@requires_ipv6
def test_an_ipv6_server_is_named_alike_however_it_is_written() -> None:
    """`[0:0::1]:PORT` and `[::1]:PORT` are one server, named `[::1]:PORT` in every fact and note."""
    with DnsServer(V6_ZONE, host=LOOPBACK6) as server:
        long_form = f"[0:0:0:0:0:0:0:1]:{server.port}"
        facts, _ = probe_dns(
            {"names": ["cas01.contoso.local"], "servers": [long_form, server.address], "expect": [LOOPBACK6]}
        )
    (fact,) = [f for f in facts if f.kind == "dns.resolution"]  # the two spellings were asked once
    assert fact.attrs["server"] == server.address == f"[::1]:{server.port}"
    assert fact.provenance.source == f"dns [::1]:{server.port}"


@requires_ipv6
def test_ipv4_mapped_server_reaches_the_ipv4_server() -> None:
    with DnsServer(V6_ZONE, host=LOOPBACK) as server:
        facts, result = probe_dns(
            {"names": ["cas01.contoso.local"], "servers": [f"[::ffff:127.0.0.1]:{server.port}"], "expect": [INTERNAL]}
        )
    assert result.status.value == "complete", result.reason
    got = resolution(facts, "cas01.contoso.local")
    assert (got["server"], got["outcome"], got["matches_internal"]) == (f"[::ffff:127.0.0.1]:{server.port}", "ok", True)


@requires_ipv6
def test_profile_with_ipv6_servers_and_internal_address(tmp_path: Path) -> None:
    """A site profile read from YAML names its DNS server `[::1]:PORT` and its CAS `::1`."""
    with DnsServer(V6_ZONE, host=LOOPBACK6) as server:
        profile = tmp_path / "site.yaml"
        profile.write_text(
            "published_names: [mail.contoso.com]\ninternal_name: cas01.contoso.local\n"
            f"internal_addresses: ['::1']\ndns_servers: ['[::1]:{server.port}']\n",
            encoding="utf-8",
        )
        proc = run_cli("probe", "dns", "--profile", str(profile), "--no-hosts", "--format", "json", "--timeout", "1")
    assert proc.returncode == 0, proc.stderr
    facts = {f["subject"]: f["attrs"] for f in json.loads(proc.stdout)["facts"] if f["kind"] == "dns.resolution"}
    assert facts["mail.contoso.com"]["server"] == f"[::1]:{server.port}"
    assert facts["mail.contoso.com"]["matches_internal"] is False
    assert facts["cas01.contoso.local"]["matches_internal"] is True


def test_cli_bad_inputs_give_one_line(tmp_path: Path) -> None:
    proc = run_cli(
        "probe", "dns", "mail.contoso.com", "--hosts-file", str(tmp_path / "missing"), "--dns-server", "127.0.0.1:53"
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"diagnose: error: {tmp_path / 'missing'}: hosts file not found"
    proc = run_cli("probe", "dns", "mail.contoso.com", "--dns-server", "dns.example:53", "--no-hosts")
    assert proc.returncode == 2 and "give an IP address" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("probe", "dns", "mail.contoso.com", "--dns-server", "::1:53530", "--no-hosts")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "diagnose: error: '::1:53530' is not an IPv6 address; with a port, write [::1]:53530"
    )
    proc = run_cli("probe", "dns", "mail.contoso.com", "--dns-server", "[dns.example]:53", "--no-hosts")
    assert proc.returncode == 2 and "only an IPv6 address goes in brackets" in proc.stderr
