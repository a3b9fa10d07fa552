"""`diagnose run` against a loopback CAS whose certificate TMG may not trust, with and without TMG's
exported CA store (`--ca-file`). Every certificate is generated here; the CAS is a TLS server on
127.0.0.10 and the names resolve through a DNS server on loopback started by the test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.certs import CertFactory, Issued
from tests.conftest import run_cli
from tests.servers import DnsServer, TlsServer, owa_app
from tests.test_run_network import INTERNAL, healthy_cas_checks, write_site

SAN = ["cas01.contoso.local", "webmail.contoso.com", "mail.contoso.com"]
ZONE = {name: {"A": [INTERNAL]} for name in SAN}  # every name resolves to the CAS: only trust can be wrong


def diagnose_against(tmp_path: Path, issued: Issued, ca_file: Path | None) -> dict[str, Any]:
    profile, hosts = write_site(tmp_path)
    with DnsServer(ZONE) as dns_server, TlsServer(issued, app=owa_app(), host=INTERNAL) as cas:
        # the shipped checks aimed at the test's port; the CA file comes from --ca-file, as in a real run
        checks = healthy_cas_checks(tmp_path, cas.port, Path("{ca_file}"))
        args = ["--ca-file", str(ca_file)] if ca_file else []
        proc = run_cli(
            "run",
            "--profile",
            str(profile),
            "--hosts-file",
            str(hosts),
            "--checks",
            str(checks),
            "--dns-server",
            dns_server.address,
            *args,
            "--no-input",
            "--format",
            "json",
            "--timeout",
            "20",
        )
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def certificate(diagnosis: dict[str, Any]) -> dict[str, Any]:
    (cert,) = [f["attrs"] for f in diagnosis["facts"] if f["kind"] == "tls.certificate"]
    return cert


def cause(diagnosis: dict[str, Any], cause_id: str) -> dict[str, Any] | None:
    return next((c for c in diagnosis["causes"] if c["id"] == cause_id), None)


def test_certificate_not_chaining_to_tmg_store_is_established(tmp_path: Path) -> None:
    issued = CertFactory(tmp_path / "exchange-ca").issue("cas01.contoso.local", san=SAN)
    tmg_store = CertFactory(tmp_path / "tmg-store").root_pem  # TMG trusts another CA only
    diagnosis = diagnose_against(tmp_path, issued, tmg_store)
    top = diagnosis["causes"][0]
    assert top["id"] == "certificate-untrusted-or-expired"
    assert top["certainty"] >= 0.5
    assert diagnosis["verdict"] == "misconfiguration"
    assert [r["id"] for r in top["rules"]] == ["certificate-not-trusted-by-tmg-store"]
    cert = certificate(diagnosis)
    assert (cert["trusted"], cert["trust_store"], cert["ca_file"]) == (False, "ca-file", str(tmg_store))


def test_untrusted_certificate_without_tmg_store_is_weak(tmp_path: Path) -> None:
    issued = CertFactory(tmp_path / "exchange-ca").issue("cas01.contoso.local", san=SAN)
    diagnosis = diagnose_against(tmp_path, issued, None)
    found = cause(diagnosis, "certificate-untrusted-or-expired")
    assert found is not None and found["certainty"] < 0.5
    assert [r["id"] for r in found["rules"]] == ["certificate-not-trusted"]
    assert diagnosis["verdict"] != "misconfiguration"
    cert = certificate(diagnosis)
    assert (cert["trusted"], cert["trust_store"]) == (False, "system") and "ca_file" not in cert


def test_expired_certificate_from_a_trusted_ca_asks_for_renewal_only(tmp_path: Path) -> None:
    factory = CertFactory(tmp_path / "exchange-ca")
    expired = factory.issue("cas01.contoso.local", san=SAN, days=(-400, -2))
    diagnosis = diagnose_against(tmp_path, expired, factory.root_pem)  # TMG's store has the issuing CA
    top = diagnosis["causes"][0]
    assert top["id"] == "certificate-expired"
    assert diagnosis["verdict"] == "misconfiguration"
    assert cause(diagnosis, "certificate-untrusted-or-expired") is None
    remediation = " ".join(step for c in diagnosis["causes"] for step in c["remediation"])
    assert "Renew" in remediation and "Import the issuing CA" not in remediation
    cert = certificate(diagnosis)
    assert cert["trusted"] is True and cert["expired"] is True
