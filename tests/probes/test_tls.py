"""The tls probe against real TLS servers on loopback, with certificates generated here."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes

from diagnose.collect import plan_check
from diagnose.kinds import fact_kinds
from diagnose.probes import ProbeContext, run_probe
from diagnose.probes.tls import certificates_from_handshake, name_on_certificate
from diagnose.profile import SiteProfile
from tests.certs import CertFactory
from tests.conftest import run_cli
from tests.servers import LOOPBACKS, SilentPeer, TlsServer, closed_port, host_port, requires_ipv6

INTERNAL_NAME = "cas01.contoso.local"
PUBLISHED = ["mail.contoso.com", "autodiscover.contoso.com"]


@pytest.fixture(scope="module")
def factory(tmp_path_factory: pytest.TempPathFactory) -> CertFactory:
    return CertFactory(tmp_path_factory.mktemp("certs"))


def probe_tls(targets: list[str], factory: CertFactory | None = None, **spec: Any) -> list[dict[str, Any]]:
    full = {
        "targets": targets,
        "sni": INTERNAL_NAME,
        "internal_name": INTERNAL_NAME,
        "published_names": PUBLISHED,
        "timeout": 1.0,
        **spec,
    }
    if factory is not None:
        full.setdefault("ca_file", str(factory.root_pem))
    result, run = run_probe("tls", ProbeContext(), full, ("tls.certificate",))
    fact_kinds().check(result.facts, "tls probe")
    assert run.status.value == "complete"
    assert [f.subject for f in result.facts] == [str(t) for t in targets]
    return [dict(f.attrs) for f in result.facts]


@pytest.mark.parametrize("host", LOOPBACKS)
def test_matching_certificate(factory: CertFactory, host: str) -> None:
    issued = factory.issue(INTERNAL_NAME, san=[INTERNAL_NAME, *PUBLISHED])
    with TlsServer(issued, host=host) as server:
        (cert,) = probe_tls([server.address], factory)
        assert server.server_names == [INTERNAL_NAME, INTERNAL_NAME]  # SNI: the TMG-like and the trust handshake
    assert (cert["host"], cert["port"]) == (host, server.port)
    assert cert["handshake"] == "ok" and cert["protocol"] == "TLSv1.2"
    assert cert["subject_cn"] == INTERNAL_NAME
    assert cert["san_dns"] == (INTERNAL_NAME, *PUBLISHED)
    assert cert["name_matches_internal"] is True and cert["name_matches_published"] is True
    assert cert["unmatched_names"] == ()
    assert cert["trusted"] is True and "trust_error" not in cert
    assert cert["self_signed"] is False and cert["expired"] is False
    assert 363 <= cert["days_to_expiry"] <= 365
    assert cert["issuer"] == "CN=Contoso Test Issuing CA,O=Contoso Test"
    # the chain as sent: leaf and intermediate (servers do not send the root)
    assert cert["chain_length"] == 2
    assert cert["chain_subjects"] == (
        "CN=cas01.contoso.local,O=Contoso Test",
        "CN=Contoso Test Issuing CA,O=Contoso Test",
    )
    assert cert["fingerprint_sha256"] == issued.certificate.fingerprint(hashes.SHA256()).hex()


@pytest.mark.parametrize("host", LOOPBACKS)
def test_mismatched_name(factory: CertFactory, host: str) -> None:
    # the case from TechNet Wiki 17324: the SAN carries the public name but not the internal one
    issued = factory.issue("mail.contoso.com", san=["mail.contoso.com"])
    with TlsServer(issued, host=host) as server:
        (cert,) = probe_tls([server.address], factory, certificate_fqdn="mail.contoso.com")
    assert cert["handshake"] == "ok"
    assert cert["name_matches_internal"] is False
    assert cert["name_matches_published"] is False
    assert cert["name_matches_certificate_fqdn"] is True
    assert cert["unmatched_names"] == (INTERNAL_NAME, "autodiscover.contoso.com")
    assert cert["trusted"] is True  # trust is judged apart from names


@pytest.mark.parametrize("host", LOOPBACKS)
def test_expired_certificate(factory: CertFactory, host: str) -> None:
    issued = factory.issue(INTERNAL_NAME, san=[INTERNAL_NAME], days=(-400, -10))
    with TlsServer(issued, host=host) as server:
        (cert,) = probe_tls([server.address], factory)
    assert cert["expired"] is True
    assert cert["days_to_expiry"] in (-10, -11)
    # the chain is good: the trust check ignores dates, so an expired certificate is not also "untrusted"
    assert cert["trusted"] is True and "trust_error" not in cert
    assert cert["trust_store"] == "ca-file"


def test_self_signed_certificate(factory: CertFactory) -> None:
    issued = factory.issue(INTERNAL_NAME, self_signed=True)  # no SAN: the CN is the name
    with TlsServer(issued) as server:
        (cert,) = probe_tls([server.address], factory)
    assert cert["self_signed"] is True and cert["chain_length"] == 1
    assert cert["san_dns"] == ()
    assert cert["name_matches_internal"] is True
    assert cert["trusted"] is False and cert["trust_error"] == "self-signed certificate"


def test_untrusted_without_the_root(factory: CertFactory, tmp_path: Path) -> None:
    issued = factory.issue(INTERNAL_NAME, san=[INTERNAL_NAME])
    with TlsServer(issued) as server:
        (cert,) = probe_tls([server.address])  # the test root is not in the system store
    assert cert["trusted"] is False
    assert cert["trust_error"] == "unable to get local issuer certificate"


@pytest.mark.parametrize("host", LOOPBACKS)
def test_handshake_failures(factory: CertFactory, host: str) -> None:
    issued = factory.issue(INTERNAL_NAME, san=[INTERNAL_NAME])
    only_tls13 = (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3)
    with TlsServer(None, behaviour="reset-on-hello", host=host) as resetting, TlsServer(
        None, behaviour="close-on-hello", host=host
    ) as closing, TlsServer(issued, versions=only_tls13, host=host) as modern, TlsServer(
        None, behaviour="plain-http", host=host
    ) as plain, SilentPeer(host) as silent:
        refused = host_port(host, closed_port(host))
        reset, closed, mismatch, not_tls, timeout, refusal = probe_tls(
            [resetting.address, closing.address, modern.address, plain.address, silent.address, refused],
            factory,
            timeout=0.5,
        )
    assert reset["handshake"] == "reset" and "subject_cn" not in reset
    assert closed["handshake"] == "closed"
    # TMG 2010 speaks TLS 1.0-1.2; the certificate is still fetched with a TLS 1.3 handshake
    assert mismatch["handshake"] == "protocol-mismatch"
    assert mismatch["protocol"] == "TLSv1.3" and mismatch["subject_cn"] == INTERNAL_NAME
    assert "a TLSv1.3 handshake works" in mismatch["detail"]
    assert not_tls["handshake"] == "not-tls" and "HTTP/1.1 400" in not_tls["detail"]
    assert timeout["handshake"] == "timeout" and timeout["elapsed_ms"] >= 450
    assert refusal["handshake"] == "refused"


@pytest.mark.parametrize("host", LOOPBACKS)
def test_targets_and_names_from_the_profile(factory: CertFactory, host: str) -> None:
    issued = factory.issue(INTERNAL_NAME, san=[INTERNAL_NAME, "mail.contoso.com"])
    with TlsServer(issued, host=host) as server:
        profile = SiteProfile(
            published_names=("mail.contoso.com",), internal_name=INTERNAL_NAME, internal_addresses=(host,)
        )
        result, _ = run_probe(
            "tls",
            ProbeContext(),
            plan_check("tls", {"port": server.port, "targets": "", "published_names": []}, profile)[1],
        )
        assert set(server.server_names) == {INTERNAL_NAME}
    (fact,) = result.facts
    assert fact.subject == server.address
    assert fact.attrs["sni"] == INTERNAL_NAME and fact.attrs["name_matches_published"] is True


@requires_ipv6
def test_ipv6_literal_as_the_to_name(factory: CertFactory) -> None:
    """A rule whose To is the server's IPv6 address: no SNI is sent (RFC 6066 allows names only), and the
    certificate must carry the address as an IP SAN; written any way, the target is probed once."""
    with_ip = factory.issue(INTERNAL_NAME, san=[INTERNAL_NAME], san_ips=["::1"])
    without = factory.issue(INTERNAL_NAME, san=[INTERNAL_NAME])
    with TlsServer(with_ip, host="::1") as good, TlsServer(without, host="::1") as bad:
        result, _ = run_probe(
            "tls",
            ProbeContext(),
            {
                "targets": [good.address, f"[0:0::1]:{good.port}", bad.address],
                "internal_name": "0:0::1",
                "ca_file": str(factory.root_pem),
                "timeout": 1.0,
            },
        )
        assert good.server_names == [None, None] and bad.server_names == [None, None]
    assert [f.subject for f in result.facts] == [good.address, bad.address]
    ok, mismatch = (dict(f.attrs) for f in result.facts)
    assert (ok["sni"], ok["host"], ok["name_matches_internal"], ok["san_ip"]) == ("0:0::1", "::1", True, ("::1",))
    assert mismatch["name_matches_internal"] is False and mismatch["unmatched_names"] == ("0:0::1",)
    assert ok["trusted"] is True and mismatch["trusted"] is True


@pytest.mark.parametrize(
    ("name", "san", "cn", "expected"),
    [
        ("mail.contoso.com", ["*.contoso.com"], None, True),
        ("contoso.com", ["*.contoso.com"], None, False),
        ("a.b.contoso.com", ["*.contoso.com"], None, False),
        ("MAIL.contoso.com.", ["mail.contoso.com"], None, True),
        ("cas01", ["cas01.contoso.local"], None, False),
        ("cas01.contoso.local", ["mail.contoso.com"], "cas01.contoso.local", False),  # SAN wins over CN
        ("cas01.contoso.local", [], "cas01.contoso.local", True),
    ],
)
def test_name_matching(name: str, san: list[str], cn: str | None, expected: bool) -> None:
    assert name_on_certificate(name, san, [], cn) is expected


def test_ip_address_to_name_needs_an_ip_san() -> None:
    assert name_on_certificate("127.0.0.10", ["cas01.contoso.local"], ["127.0.0.10"], None) is True
    assert name_on_certificate("127.0.0.10", ["127.0.0.10"], [], None) is False


def test_chain_parser_ignores_what_it_cannot_read() -> None:
    assert certificates_from_handshake(b"") == []
    assert certificates_from_handshake(b"\x16\x03\x03\x00\x04\x0b\x00\x00\x00") == []
    assert certificates_from_handshake(b"HTTP/1.1 400 Bad Request\r\n") == []


def test_cli_tls_json(factory: CertFactory) -> None:
    issued = factory.issue("mail.contoso.com", san=["mail.contoso.com"])
    with TlsServer(issued) as server:
        proc = run_cli(
            "probe",
            "tls",
            server.address,
            "--internal-name",
            INTERNAL_NAME,
            "--name",
            "mail.contoso.com",
            "--ca-file",
            str(factory.root_pem),
            "--format",
            "json",
        )
    assert proc.returncode == 0, proc.stderr
    (fact,) = json.loads(proc.stdout)["facts"]
    assert fact["kind"] == "tls.certificate"
    assert fact["attrs"]["name_matches_internal"] is False
    assert fact["attrs"]["unmatched_names"] == [INTERNAL_NAME]
    proc = run_cli("probe", "tls", "127.0.0.1:1", "--ca-file", "/nonexistent/ca.pem")
    assert proc.returncode == 2 and proc.stderr.strip() == "diagnose: error: /nonexistent/ca.pem: CA file not found"
