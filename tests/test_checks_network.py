"""checks/network.yaml drives the network probes with nothing but its templated parameters."""

from __future__ import annotations

from pathlib import Path

from diagnose.collect import Check, RunInputs, fill, load_checks
from diagnose.kinds import fact_kinds
from diagnose.probes import ProbeContext, get_probe
from diagnose.profile import SiteProfile
from tests.conftest import REPO
from tests.servers import DnsServer

PROFILE = SiteProfile(
    published_names=("mail.contoso.com",),
    certificate_fqdn="mail.contoso.com",
    internal_name="cas01.contoso.local",
    internal_addresses=("127.0.0.10",),
    published=("owa", "activesync"),
    exchange_version="2010",
)


def network_checks() -> dict[str, Check]:
    return {c.id: c for c in load_checks([REPO / "checks"]) if c.path.startswith(str(REPO / "checks" / "network"))}


def test_catalogue_declares_the_four_checks() -> None:
    checks = network_checks()
    assert sorted(checks) == ["dns-names", "http-published-endpoints", "tcp-internal-443", "tls-internal-certificate"]
    for check in checks.values():
        for kind in check.kinds:
            assert fact_kinds()[kind].probe == check.probe


def test_every_check_runs_from_its_filled_parameters(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.10 cas01.contoso.local\n", encoding="utf-8")
    with DnsServer({"mail.contoso.com": {"A": ["127.0.0.200"]}}) as dns_server:
        context = RunInputs(dns_servers=[dns_server.address], hosts_file=str(hosts)).context(PROFILE)
        results = {}
        for check_id, check in network_checks().items():
            spec = fill(dict(check.params), context)
            ctx = ProbeContext(check=check_id)
            results[check_id] = get_probe(check.probe)(ctx, spec)
    for check_id, result in results.items():
        assert result.status.value == "complete", (check_id, result.reason)
        fact_kinds().check(result.facts, check_id)
        assert all(f.provenance.check == check_id for f in result.facts)
    (mail,) = [f for f in results["dns-names"].facts if f.subject == "mail.contoso.com" and f.attrs["source"] == "dns"]
    assert mail.attrs["addresses"] == ("127.0.0.200",) and mail.attrs["matches_internal"] is False
    assert [f.subject for f in results["tcp-internal-443"].facts] == ["127.0.0.10:443"]
    assert {f.attrs["path"] for f in results["http-published-endpoints"].facts} == {
        "/owa/",
        "/owa/auth/logon.aspx",
        "/owa/auth/owaauth.dll",
        "/Microsoft-Server-ActiveSync",
    }
    (cert,) = results["tls-internal-certificate"].facts
    assert cert.attrs["sni"] == "cas01.contoso.local" and cert.subject == "127.0.0.10:443"


def test_offline_dns_check_asks_no_server(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.10 cas01.contoso.local mail.contoso.com\n", encoding="utf-8")
    with DnsServer({}) as dns_server:
        context = RunInputs(dns_servers=[dns_server.address], hosts_file=str(hosts), offline=True).context(PROFILE)
        check = network_checks()["dns-names"]
        result = get_probe("dns")(ProbeContext(), fill(dict(check.params), context))
        assert dns_server.queries == []
    assert result.status.value == "partial" and "offline" in result.reason
    assert {f.attrs["source"] for f in result.facts if f.kind == "dns.resolution"} == {"hosts"}
