"""`diagnose run` over the network checks, against a live DNS server on loopback started by the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.certs import CertFactory
from tests.conftest import REPO, run_cli
from tests.servers import DnsServer, TlsServer, owa_app, requires_ipv6

pytestmark = pytest.mark.skipif(
    not (REPO / "rules" / "causes" / "name-resolution-mismatch.yaml").exists(),
    reason="the name-resolution-mismatch rules are not in this checkout yet",
)

INTERNAL, PUBLIC = "127.0.0.10", "127.0.0.200"


def write_site(tmp_path: Path) -> tuple[Path, Path]:
    profile = tmp_path / "profile.yaml"
    profile.write_text(
        "published_names: [mail.contoso.com]\n"
        "certificate_fqdn: webmail.contoso.com\n"
        "internal_name: cas01.contoso.local\n"
        f"internal_addresses: [{INTERNAL}]\n"
        "tmg_addresses: [127.0.0.2]\n"
        "published: [owa, outlook-anywhere]\n"
        "exchange_version: '2010'\n",
        encoding="utf-8",
    )
    hosts = tmp_path / "hosts"
    hosts.write_bytes(
        (f"# TMG HOSTS file\r\n{INTERNAL}    cas01.contoso.local    cas01    # the CAS\r\n").encode("cp1252")
    )
    return profile, hosts


def healthy_cas_checks(tmp_path: Path, port: int, root: Path) -> Path:
    """User checks overriding the shipped ones by id: the same probes, aimed at the test's CAS port."""
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "network.yaml").write_text(
        f"""checks:
  - id: tls-internal-certificate
    probe: tls
    network: true
    kinds: [tls.certificate]
    requires: [internal_name]
    params: {{targets: "{{internal_addresses}}", port: {port}, sni: "{{internal_name}}",
              internal_name: "{{internal_name}}", published_names: "{{published_names}}",
              certificate_fqdn: "{{certificate_fqdn}}", ca_file: "{root}"}}
  - id: http-published-endpoints
    probe: http
    network: true
    kinds: [http.endpoint]
    requires: [internal_name, published]
    params: {{server: "{{internal_name}}", addresses: "{{internal_addresses}}", published: "{{published}}",
              exchange_version: "{{exchange_version}}", port: {port}}}
  - id: tcp-internal-443
    probe: tcp
    network: true
    kinds: [tcp.reachability]
    requires: [internal_addresses]
    params: {{targets: "{{internal_addresses}}", port: {port}}}
""",
        encoding="utf-8",
    )
    return checks


def test_run_ranks_name_resolution_mismatch_first(tmp_path: Path) -> None:
    profile, hosts = write_site(tmp_path)
    zone = {
        "mail.contoso.com": {"A": [PUBLIC]},  # published name: the public address
        "webmail.contoso.com": {"A": [INTERNAL]},  # certificate FQDN: the CAS
        "cas01.contoso.local": {"A": [INTERNAL]},
    }
    factory = CertFactory(tmp_path / "certs")
    issued = factory.issue(
        "cas01.contoso.local", san=["cas01.contoso.local", "webmail.contoso.com", "mail.contoso.com"]
    )
    # a healthy CAS at the internal address: the only fault is name resolution
    with DnsServer(zone) as dns_server, TlsServer(issued, app=owa_app(), host=INTERNAL) as cas:
        checks = healthy_cas_checks(tmp_path, cas.port, factory.root_pem)
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
            "--no-input",
            "--format",
            "json",
            "--timeout",
            "20",
        )
        asked = {name for _transport, name, _type in dns_server.queries}
        cas_requests = list(cas.requests)
    assert proc.returncode in (0, 1), proc.stderr
    diagnosis = json.loads(proc.stdout)
    assert diagnosis["causes"], diagnosis
    assert diagnosis["causes"][0]["id"] == "name-resolution-mismatch"
    assert diagnosis["verdict"] == "misconfiguration"
    assert {"mail.contoso.com", "webmail.contoso.com"} <= asked  # the answer came from the live server
    facts = [f for f in diagnosis["facts"] if f["kind"] == "dns.resolution" and f["subject"] == "mail.contoso.com"]
    assert any(f["attrs"]["addresses"] == [PUBLIC] and f["attrs"]["effective"] for f in facts)
    assert len(cas_requests) == 4  # the endpoints of OWA and Outlook Anywhere were requested from the CAS
    healthy = {f["attrs"]["path"]: f["attrs"]["healthy"] for f in diagnosis["facts"] if f["kind"] == "http.endpoint"}
    assert all(healthy.values()) and len(healthy) == 4
    (cert,) = [f["attrs"] for f in diagnosis["facts"] if f["kind"] == "tls.certificate"]
    assert cert["trusted"] is True and cert["name_matches_internal"] is True


# ------------------------------------------------------------------------------------------ IPv6


def write_site_v6(tmp_path: Path, dns_address: str | None) -> tuple[Path, Path]:
    """The site over IPv6: the CAS at ::1 and (when given) the DNS server at [::1]:PORT in the profile."""
    profile = tmp_path / "profile.yaml"
    profile.write_text(
        "published_names: [mail.contoso.com]\n"
        "certificate_fqdn: webmail.contoso.com\n"
        "internal_name: cas01.contoso.local\n"
        "internal_addresses: ['::1']\n"
        "tmg_addresses: ['fd00:10:1:4::98']\n"
        + (f"dns_servers: ['{dns_address}']\n" if dns_address else "")
        + "published: [owa, outlook-anywhere]\n"
        "exchange_version: '2010'\n",
        encoding="utf-8",
    )
    hosts = tmp_path / "hosts"
    hosts.write_text("# TMG HOSTS file: no entries for the site\r\n", encoding="utf-8")
    return profile, hosts


def run_v6(tmp_path: Path, zone: dict, san: list[str], dns_in_profile: bool) -> tuple[dict, list, list]:
    """`diagnose run` against the site over IPv6, the DNS server named in the profile or by --dns-server."""
    factory = CertFactory(tmp_path / "certs")
    issued = factory.issue(san[0], san=san)
    with DnsServer(zone, host="::1") as dns_server, TlsServer(issued, app=owa_app(), host="::1") as cas:
        profile, hosts = write_site_v6(tmp_path, dns_server.address if dns_in_profile else None)
        checks = healthy_cas_checks(tmp_path, cas.port, factory.root_pem)
        given = () if dns_in_profile else ("--dns-server", dns_server.address)
        proc = run_cli(
            "run",
            "--profile",
            str(profile),
            "--hosts-file",
            str(hosts),
            "--checks",
            str(checks),
            *given,
            "--no-input",
            "--format",
            "json",
            "--timeout",
            "20",
        )
        requests, server_names = list(cas.requests), list(cas.server_names)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout), requests, server_names


@requires_ipv6
def test_run_over_ipv6_ranks_name_resolution_mismatch_first(tmp_path: Path) -> None:
    """The published name has AAAA (and A) records of the public side; the CAS is healthy at ::1."""
    zone = {
        "mail.contoso.com": {"A": ["203.0.113.10"], "AAAA": ["2001:db8::10"]},
        "webmail.contoso.com": {"AAAA": ["::1"]},
        "cas01.contoso.local": {"AAAA": ["::1"]},
    }
    diagnosis, requests, server_names = run_v6(
        tmp_path, zone, ["cas01.contoso.local", "webmail.contoso.com", "mail.contoso.com"], dns_in_profile=True
    )
    assert diagnosis["verdict"] == "misconfiguration"
    top = diagnosis["causes"][0]
    assert top["id"] == "name-resolution-mismatch", diagnosis["causes"]
    server = next(
        f["attrs"]["server"]
        for f in diagnosis["facts"]
        if f["kind"] == "dns.resolution" and f["attrs"]["source"] == "dns"
    )
    assert server.startswith("[::1]:")
    explained = " ".join(r["explain"] for r in top["rules"])
    assert (
        f"mail.contoso.com (published name) resolves through dns ({server}) to 203.0.113.10, 2001:db8::10" in explained
    )
    # the CAS was reached at ::1 with its name as SNI and Host, and is healthy: names are the only fault
    assert len(requests) == 4 and set(server_names) == {"cas01.contoso.local"}
    (cert,) = [f for f in diagnosis["facts"] if f["kind"] == "tls.certificate"]
    assert cert["subject"].startswith("[::1]:") and cert["attrs"]["name_matches_internal"] is True
    assert all(f["attrs"]["healthy"] for f in diagnosis["facts"] if f["kind"] == "http.endpoint")
    (tcp,) = [f["attrs"] for f in diagnosis["facts"] if f["kind"] == "tcp.reachability"]
    assert (tcp["host"], tcp["outcome"]) == ("::1", "open")


@requires_ipv6
def test_run_over_ipv6_ranks_certificate_name_mismatch_first(tmp_path: Path) -> None:
    """Every name resolves to the CAS at ::1, but its certificate lacks the rule's To name."""
    zone = {name: {"AAAA": ["::1"]} for name in ("mail.contoso.com", "webmail.contoso.com", "cas01.contoso.local")}
    diagnosis, _requests, _names = run_v6(
        tmp_path, zone, ["mail.contoso.com", "webmail.contoso.com"], dns_in_profile=False
    )
    assert diagnosis["verdict"] == "misconfiguration"
    top = diagnosis["causes"][0]
    assert top["id"] == "certificate-name-mismatch", diagnosis["causes"]
    assert "name-resolution-mismatch" not in [c["id"] for c in diagnosis["causes"]]
    (explain,) = [r["explain"] for r in top["rules"]]
    assert explain.startswith("[::1]:") and "which does not cover cas01.contoso.local" in explain


def test_run_is_quiet_about_names_when_hosts_fixes_them(tmp_path: Path) -> None:
    profile, hosts = write_site(tmp_path)
    hosts.write_text(f"{INTERNAL} cas01.contoso.local mail.contoso.com webmail.contoso.com\n", encoding="utf-8")
    with DnsServer({"mail.contoso.com": {"A": [PUBLIC]}}) as dns_server:
        proc = run_cli(
            "run",
            "--profile",
            str(profile),
            "--hosts-file",
            str(hosts),
            "--dns-server",
            dns_server.address,
            "--no-input",
            "--format",
            "json",
            "--timeout",
            "20",
        )
    assert proc.returncode in (0, 1), proc.stderr
    diagnosis = json.loads(proc.stdout)
    assert "name-resolution-mismatch" not in [c["id"] for c in diagnosis["causes"]]


def test_progress_lines_are_redacted_with_redact(tmp_path: Path) -> None:
    """With --redact, the progress lines on stderr carry tokens, not the names and addresses asked for."""
    profile, hosts = write_site(tmp_path)
    zone = {
        "mail.contoso.com": {"A": [PUBLIC]},
        "webmail.contoso.com": {"A": [INTERNAL]},
        "cas01.contoso.local": {"A": [INTERNAL]},
    }
    with DnsServer(zone) as dns_server:
        common = (
            "collect",
            "--profile",
            str(profile),
            "--hosts-file",
            str(hosts),
            "--dns-server",
            dns_server.address,
            "--no-input",
            "--progress",
            "--timeout",
            "20",
        )
        plain = run_cli(*common, "-o", str(tmp_path / "plain.json"))
        redacted = run_cli(*common, "--redact", "-o", str(tmp_path / "redacted.json"))
    assert plain.returncode == 0 and redacted.returncode == 0, plain.stderr + redacted.stderr
    assert "mail.contoso.com" in plain.stderr and dns_server.address.split(":")[0] in plain.stderr
    asking = [line for line in redacted.stderr.splitlines() if "asking" in line]
    assert asking, redacted.stderr
    for secret in ("contoso", "cas01", dns_server.address.split(":")[0], INTERNAL):
        assert secret not in redacted.stderr, secret
