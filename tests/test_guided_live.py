"""The guided diagnosis end to end through a pseudo-terminal, against live loopback services:
a DNS server, an HTTPS "CAS" whose forms-based authentication is down, and a TMG log file."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.certs import CertFactory
from tests.conftest import REPO
from tests.servers import DnsServer, TlsServer, owa_app

pexpect = pytest.importorskip("pexpect")

TMG, CAS = "127.0.0.2", "127.0.0.10"
FIELDS = (
    "computer\tdate\ttime\tIP protocol\tsource\tdestination\toriginal client IP\tsource network\t"
    "destination network\taction\tstatus\trule\tapplication protocol\tbytes sent\tbytes received\t"
    "connection time\tdestination name\tconnection ID"
)


def write_log(path: Path, port: int) -> None:
    """A TMG Firewall W3C log: OWA requests, some ending in Status 64 on the TMG-to-CAS leg."""
    lines = [
        "#Software: Microsoft Forefront Threat Management Gateway 2010",
        "#Version: 1.0",
        "#Date: 2026-11-27 09:00:00",
        f"#Fields: {FIELDS}",
    ]
    for n in range(12):
        t = f"09:{10 + n:02d}:05"
        lines.append(
            f"TMG01\t2026-11-27\t{t}\tTCP\t{TMG}:{40000 + n}\t{CAS}:{port}\t{TMG}\tLocal Host\tInternal\t"
            f"Initiated Connection\t0x0\tOWA (Exchange 2010)\tHTTPS\t-\t-\t-\tcas01.contoso.local\t{n}"
        )
        if n % 3 == 0:
            lines.append(
                f"TMG01\t2026-11-27\t{t}\tTCP\t{TMG}:{40000 + n}\t{CAS}:{port}\t{TMG}\tLocal Host\t"
                f"Internal\tFailed Connection Attempt\t0x80070040\tOWA (Exchange 2010)\tHTTPS\t812\t0\t15\t"
                f"cas01.contoso.local\t{n}"
            )
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")


def test_guided_session_reaches_fba_after_two_questions(tmp_path: Path) -> None:
    factory = CertFactory(tmp_path / "certs")
    issued = factory.issue("cas01.contoso.local", san=["cas01.contoso.local", "mail.contoso.com"])
    zone = {"mail.contoso.com": {"A": [CAS]}, "cas01.contoso.local": {"A": [CAS]}}
    with DnsServer(zone) as dns_server, TlsServer(issued, app=owa_app(fba_running=False), host=CAS) as cas:
        profile = tmp_path / "profile.yaml"
        profile.write_text(f"""published_names: [mail.contoso.com]
certificate_fqdn: mail.contoso.com
internal_name: cas01.contoso.local
internal_addresses: [{CAS}]
internal_port: {cas.port}
tmg_addresses: [{TMG}]
published: [owa, outlook-anywhere]
exchange_version: "2010"
""")
        hosts = tmp_path / "hosts"
        hosts.write_text("127.0.0.1 localhost\n")
        log = tmp_path / "ISALOG_20261127_FWS_000.w3c"
        write_log(log, cas.port)
        bundle = tmp_path / "bundle.json"
        env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
        child = pexpect.spawn(
            sys.executable,
            [
                "-m",
                "diagnose",
                "run",
                "--profile",
                str(profile),
                "--hosts-file",
                str(hosts),
                "--dns-server",
                dns_server.address,
                "--log",
                str(log),
                "--ca-file",
                str(factory.root_pem),
                "--save-evidence",
                str(bundle),
                "--timeout",
                "20",
            ],
            cwd=str(REPO),
            env=env,
            encoding="utf-8",
            timeout=60,
            dimensions=(50, 200),
        )
        transcript = []
        child.logfile_read = _Collect(transcript)
        child.expect(r"Question 1: Are external users reporting failures")
        child.sendline("yes")
        child.expect(r"Question 2: Which clients are affected\? \[owa/outlook-anywhere/activesync/all/none")
        child.sendline("?")
        child.expect(r"if owa: verdict misconfiguration, top cause exchange-fba-service-stopped")
        child.sendline("owa")
        child.expect("Verdict: MISCONFIGURATION")
        child.expect(pexpect.EOF)
        child.close()
        requests = list(cas.requests)
    text = "".join(transcript)
    assert child.exitstatus == 0, text
    assert len(re.findall(r"Question \d+:", text)) <= 3
    report = text[text.index("Verdict:") :]
    first = re.search(r"^\s+1\s+[\d.]+\s+\w+\s+(\S+)", report, re.M)
    assert first and first.group(1) == "exchange-fba-service-stopped", report
    assert any("owaauth" in str(r).lower() for r in requests)  # the logon form was really posted to the CAS
    saved = bundle.read_text()
    assert '"affected-clients": "owa"' in saved and '"users-report-failures": "yes"' in saved


class _Collect:
    def __init__(self, sink: list[str]) -> None:
        self.sink = sink

    def write(self, text: str) -> None:
        self.sink.append(text)

    def flush(self) -> None:
        pass
