"""`diagnose probe X` runs the same check path as `collect`: for the same inputs its JSON (one schema, with a
version) carries exactly the facts `collect` puts in the bundle for that check. Real inputs: the bundled
examples, exports under tests/data, and servers on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.certs import CertFactory
from tests.conftest import REPO, run_cli
from tests.servers import DnsServer, TlsServer, owa_app

EXAMPLES = REPO / "examples"
SEED = EXAMPLES / "seed"
HOST_DATA = REPO / "tests" / "data" / "host"
CORPUS = REPO.parent / "shared" / "corpus"
INTERNAL = "127.0.0.10"


TIMINGS = ("elapsed_ms",)  # measured per run; everything else must be equal


def _facts(facts: list[dict[str, Any]], check: str, probe: str | None = None) -> list[dict[str, Any]]:
    """The check's facts (the capture probe's carry no check: those of `probe`), without the time they
    were made and the durations measured."""
    out = []
    for fact in facts:
        made_by = fact["provenance"].get("check")
        if made_by != check and not (made_by is None and fact["provenance"].get("probe") == probe):
            continue
        fact = {
            **fact,
            "provenance": {k: v for k, v in fact["provenance"].items() if k != "time"},
            "attrs": {k: v for k, v in fact["attrs"].items() if k not in TIMINGS},
        }
        out.append(fact)
    return out


def collected(tmp_path: Path, *args: str) -> dict[str, Any]:
    bundle = tmp_path / "bundle.json"
    proc = run_cli("collect", *args, "--no-input", "-o", str(bundle))
    assert proc.returncode == 0, proc.stderr
    loaded: dict[str, Any] = json.loads(bundle.read_text(encoding="utf-8"))
    return loaded


def probed(kind: str, *args: str) -> dict[str, Any]:
    proc = run_cli("probe", kind, *args, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    assert doc["schema"] == "diagnose.probe/1"
    assert set(doc) == {"schema", "probe", "facts", "excerpts"}
    return doc


def same_facts(bundle: dict[str, Any], doc: dict[str, Any], check: str) -> list[dict[str, Any]]:
    """The probe's facts equal the bundle's for `check` (and its run says the same); returns them."""
    assert doc["probe"]["check"] == check
    run = next(p for p in bundle["probes"] if p.get("check") == check)
    assert (doc["probe"]["status"], doc["probe"]["reason"]) == (run["status"], run["reason"])
    assert doc["probe"].get("notes", []) == run.get("notes", [])
    expected = _facts(bundle["facts"], check, run["probe"])
    assert expected, f"collect made no {check} facts"
    assert _facts(doc["facts"], check, run["probe"]) == expected
    return expected


def test_logs(tmp_path: Path) -> None:
    log = str(SEED / "ISALOG_20110504_FWS_000.w3c")
    profile = str(SEED / "profile.yaml")
    bundle = collected(tmp_path, "--profile", profile, "--log", log, "--offline")
    same_facts(bundle, probed("logs", log, "--profile", profile), "tmg-logs")


def test_capture_with_logs_has_the_status64_match(tmp_path: Path) -> None:
    log, capture = str(SEED / "ISALOG_20110504_FWS_000.w3c"), str(SEED / "netmon-trace.txt")
    profile = str(SEED / "profile.yaml")
    bundle = collected(tmp_path, "--profile", profile, "--log", log, "--capture", capture, "--offline")
    facts = same_facts(bundle, probed("capture", capture, "--log", log, "--profile", profile), "capture-teardown")
    assert "capture.status64_match" in {f["kind"] for f in facts}


def test_services_export(tmp_path: Path) -> None:
    export, profile = (
        str(EXAMPLES / "fba-stopped" / "cas01-services.csv"),
        str(EXAMPLES / "fba-stopped" / "profile.yaml"),
    )
    bundle = collected(tmp_path, "--profile", profile, "--services-export", export, "--offline")
    same_facts(bundle, probed("services", "--services-export", export, "--profile", profile), "exchange-services")


def test_host_exports(tmp_path: Path) -> None:
    exports = [
        str(HOST_DATA / "netstat-anob-en.txt"),
        str(HOST_DATA / "netsh-dynamicport-tcp-en.txt"),
        str(HOST_DATA / "events-system-wevtutil.txt"),
    ]
    profile = str(SEED / "profile.yaml")
    bundle = collected(tmp_path, "--profile", profile, *(a for e in exports for a in ("--host-export", e)), "--offline")
    same_facts(
        bundle, probed("host", "--profile", profile, *(a for e in exports for a in ("--export", e))), "host-exports"
    )


def test_dns_offline_with_recorded_answers(tmp_path: Path) -> None:
    site = EXAMPLES / "dns-mismatch"
    args = (
        "--profile",
        str(site / "profile.yaml"),
        "--hosts-file",
        str(site / "hosts"),
        "--dns-recorded",
        str(site / "dig.txt"),
        "--offline",
    )
    bundle = collected(tmp_path, *args)
    same_facts(bundle, probed("dns", *args), "dns-names")


@pytest.mark.skipif(not (CORPUS / "iis-logs" / "u_ex100815.log").is_file(), reason="../shared/corpus is not present")
def test_proxylogs(tmp_path: Path) -> None:
    log = str(CORPUS / "iis-logs" / "u_ex100815.log")
    bundle = collected(tmp_path, "--proxy-log", log, "--offline")
    same_facts(bundle, probed("proxylogs", log), "proxy-logs")


def test_network_probes_against_a_loopback_cas(tmp_path: Path) -> None:
    """dns, tls, http and tcp from one profile, against a DNS server and an OWA server on loopback."""
    factory = CertFactory(tmp_path / "certs")
    issued = factory.issue("cas01.contoso.local", san=["cas01.contoso.local", "mail.contoso.com"])
    zone = {"mail.contoso.com": {"A": [INTERNAL]}, "cas01.contoso.local": {"A": [INTERNAL]}}
    with DnsServer(zone) as dns_server, TlsServer(issued, app=owa_app(), host=INTERNAL) as cas:
        profile = tmp_path / "profile.yaml"
        profile.write_text(
            "published_names: [mail.contoso.com]\n"
            "internal_name: cas01.contoso.local\n"
            f"internal_addresses: [{INTERNAL}]\n"
            f"internal_port: {cas.port}\n"
            f"dns_servers: ['{dns_server.address}']\n"
            "published: [owa]\n"
            "exchange_version: '2010'\n",
            encoding="utf-8",
        )
        hosts = tmp_path / "hosts"
        hosts.write_text("# empty\n", encoding="utf-8")
        site = ("--profile", str(profile), "--hosts-file", str(hosts))
        bundle = collected(tmp_path, *site, "--timeout", "20")
        docs = {
            "dns-names": probed("dns", *site),
            "tls-internal-certificate": probed("tls", "--profile", str(profile)),
            "http-published-endpoints": probed("http", "--profile", str(profile)),
            "tcp-internal-443": probed("tcp", "--profile", str(profile)),
        }
    for check, doc in docs.items():
        same_facts(bundle, doc, check)
    (tcp,) = _facts(bundle["facts"], "tcp-internal-443")
    assert tcp["subject"] == f"{INTERNAL}:{cas.port}" and tcp["attrs"]["outcome"] == "open"
