"""`diagnose run` without a profile on a terminal: discovered defaults, questions, saving the profile."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from diagnose.interview import Discovery, discover, suggestions
from tests.conftest import REPO
from tests.test_guided_live import write_log

pexpect = pytest.importorskip("pexpect")


def site_files(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "ISALOG_20261127_FWS_000.w3c"
    write_log(log, 8443)  # Status 64 from TMG 127.0.0.2 to the CAS 127.0.0.10:8443, rule "OWA (Exchange 2010)"
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n127.0.0.10  cas01  cas01.contoso.local  # the CAS\n")
    return log, hosts


def test_discovery_reads_status64_destinations_rules_and_hosts(tmp_path: Path) -> None:
    log, hosts = site_files(tmp_path)
    found = discover([str(log)], str(hosts), offline=True)
    assert found.destinations == [("127.0.0.10", None, 4)]  # the log probe counts per address, not port
    assert found.rules == ["OWA (Exchange 2010)"]
    assert found.hosts == {"127.0.0.10": ["cas01", "cas01.contoso.local"]}
    defaults = suggestions(found)
    assert defaults["internal_addresses"] == ["127.0.0.10"]
    assert "internal_port" not in defaults
    assert defaults["internal_name"] == "cas01"
    assert defaults["certificate_fqdn"] == "cas01.contoso.local"
    assert defaults["published"] == ["owa"]
    assert suggestions(Discovery())["published"] == ["owa", "outlook-anywhere"]


def test_interview_builds_and_saves_a_profile(tmp_path: Path) -> None:
    log, hosts = site_files(tmp_path)
    saved = tmp_path / "site.yaml"
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "diagnose", "run", "--log", str(log), "--hosts-file", str(hosts), "--offline"],
        cwd=str(tmp_path),
        env=env,
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 200),
    )
    child.expect(r"Status 64 in the logs goes mostly to: 127\.0\.0\.10 \(4\)")
    child.expect(r"Published host name\(s\).*: ")
    child.sendline("mail.contoso.com")
    child.expect(r"To name \(internal site name\) \[cas01\]: ")
    child.sendline("cas01.contoso.local")
    child.expect(r"Internal address\(es\) of the Exchange server \[127\.0\.0\.10\]: ")
    child.sendline("")
    child.expect(r"Port TMG bridges to on that server: ")
    child.sendline("8443")
    child.expect(r"certificate \[cas01\.contoso\.local\]: ")
    child.sendline("mail.contoso.com")
    child.expect(r"TMG's own addresses.*: ")
    child.sendline("300.1.1.1")  # not an address: asked again
    child.expect("is not an IP address")
    child.sendline("127.0.0.2")
    child.expect(r"Published protocols .*\[owa\]: ")
    child.sendline("owa, activesync")
    child.expect(r"Exchange version .*\[2010\]: ")
    child.sendline("")
    child.expect(r"Save this profile for next time\? \(a file name, or n\) \[diagnose-profile\.yaml\]: ")
    child.sendline(str(saved))
    child.expect("saved ")
    child.expect(r"Question 1: ")
    child.sendeof()
    child.expect("Verdict: ")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    profile = yaml.safe_load(saved.read_text())
    assert profile == {
        "published_names": ["mail.contoso.com"],
        "internal_name": "cas01.contoso.local",
        "internal_addresses": ["127.0.0.10"],
        "internal_port": 8443,
        "certificate_fqdn": "mail.contoso.com",
        "tmg_addresses": ["127.0.0.2"],
        "published": ["owa", "activesync"],
        "exchange_version": "2010",
    }
