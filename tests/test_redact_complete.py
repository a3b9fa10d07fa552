"""`--redact` leaves no original token in any output: bundle, reports, stdout and stderr (progress lines).

The site (tests/hostile_site.py) plants a distinctive token in every input field and path: folder
names (a case number, a site code), file names, the TMG log's computer, rule, user, source and
destination name and address fields, a Web Proxy log's URL host, user and rule, the services
export's host, the HOSTS file, the profile's values, and, live on loopback, the DNS names a DNS
server answers for and the names on the certificate an HTTPS server presents. The capture's
addresses are read from an unredacted bundle. Then `collect`, `run` and `analyze` run with --redact
in every format, and every byte they write is searched for every original.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.certs import CertFactory
from tests.conftest import CORPUS, run_cli
from tests.hostile_site import (
    CAS,
    CERT_FQDN,
    INTERNAL_NAME,
    LOOPBACK_CAS,
    PUBLISHED,
    TOKENS,
    WEB_DEST,
    Site,
    loopback_checks,
    write_site,
)
from tests.servers import DnsServer, TlsServer, owa_app

FORMATS = ("text", "json", "markdown", "html")
V4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d])")

pytestmark = pytest.mark.skipif(not (CORPUS / "pcaps").is_dir(), reason="../shared/corpus is not present")


def inputs(site: Site, dns: str, checks: Path) -> list[str]:
    return [
        "--profile",
        str(site.profile),
        "--log",
        str(site.folder / "*ISALOG.w3c"),
        "--capture",
        str(site.capture),
        "--services-export",
        str(site.services),
        "--hosts-file",
        str(site.hosts),
        "--dns-server",
        dns,
        "--checks",
        str(checks),
        "--no-input",
        "--progress",
        "--timeout",
        "30",
    ]


def leaks(text: str, originals: set[str]) -> set[str]:
    low = text.lower()
    return {t for t in originals if t.lower() in low}


def test_redacted_outputs_hold_no_original_token(tmp_path: Path) -> None:
    site = write_site(tmp_path)
    with site.log.open("a", encoding="utf-8", newline="") as fh:  # a warning on stderr naming the file and line
        fh.write("TMGZQ7\x01 binary garbage\r\n")
    out = tmp_path / "out"  # the outputs go to a folder of their own, outside the site's paths
    out.mkdir()
    zone = {PUBLISHED: {"A": [WEB_DEST]}, CERT_FQDN: {"A": [CAS]}, INTERNAL_NAME: {"A": [CAS]}}
    factory = CertFactory(tmp_path / "certs")
    issued = factory.issue(CERT_FQDN, san=[INTERNAL_NAME, CERT_FQDN, PUBLISHED])
    outputs: dict[str, str] = {}
    with DnsServer(zone) as dns, TlsServer(issued, app=owa_app(), host=LOOPBACK_CAS) as cas:
        checks = loopback_checks(tmp_path, cas.port, factory.root_pem)
        args = inputs(site, dns.address, checks)
        plain = run_cli("collect", *args, "-o", str(out / "plain.json"))
        assert plain.returncode == 0, plain.stderr
        redacted = run_cli("collect", *args, "--redact", "-o", str(out / "collected.json"))
        assert redacted.returncode == 0, redacted.stderr
        outputs["collect stderr"] = redacted.stderr
        outputs["collect stdout"] = redacted.stdout
        outputs["collected bundle"] = (out / "collected.json").read_text(encoding="utf-8")
        for fmt in FORMATS:
            done = run_cli(
                "run", *args, "--redact", "--format", fmt, "--why", "--save-evidence", str(out / f"run-{fmt}.json")
            )
            assert done.returncode in (0, 1), done.stderr
            outputs[f"run {fmt} stdout"], outputs[f"run {fmt} stderr"] = done.stdout, done.stderr
            outputs[f"run {fmt} saved bundle"] = (out / f"run-{fmt}.json").read_text(encoding="utf-8")
        asked = {name for _transport, name, _type in dns.queries}
        tls_handshakes = len(cas.server_names)
    for fmt in FORMATS:
        report = out / f"analyze.{fmt}"
        done = run_cli("analyze", str(out / "plain.json"), "--redact", "--format", fmt, "--why", "-o", str(report))
        assert done.returncode in (0, 1), done.stderr
        outputs[f"analyze {fmt} report"] = report.read_text(encoding="utf-8")
        outputs[f"analyze {fmt} stdout+stderr"] = done.stdout + done.stderr

    # the inputs were really read: every planted field reached the unredacted bundle
    unredacted = (out / "plain.json").read_text(encoding="utf-8")
    assert {PUBLISHED, CERT_FQDN} <= asked and tls_handshakes >= 1
    missing = {
        t
        for t in TOKENS
        if t.lower() not in unredacted.lower() and t not in ("ZQACME", "jqzsmith", "kqwdoe", "zqsite", "hostsqz")
    }  # not in facts, only in inputs
    assert not missing, f"planted tokens the probes did not read: {missing}"
    facts = json.loads(unredacted)["facts"]
    capture_addresses = {
        a for f in facts if f["kind"].startswith("capture.") for a in V4.findall(json.dumps(f["attrs"]) + f["subject"])
    }
    assert capture_addresses, "the capture's addresses were not read"
    originals = {*TOKENS, LOOPBACK_CAS, *capture_addresses}

    found = {where: sorted(leaks(text, originals)) for where, text in outputs.items()}
    found = {where: tokens for where, tokens in found.items() if tokens}
    assert not found, f"originals left in redacted output: {found}"
    # and the redacted outputs still say something: tokens stand where the originals were
    assert re.search(r"\bDIR-\d+/dir-\d+/file-\d+\.csv\b", outputs["collected bundle"])
    assert re.search(r"\brule-\d+\b", outputs["collected bundle"])
    assert "file-" in outputs["collect stderr"]
    assert re.search(r"file-\d+\.w3c:\d+: binary garbage skipped", outputs["collect stderr"], re.I), outputs[
        "collect stderr"
    ]


def test_error_line_of_a_redacted_collect_names_no_original(tmp_path: Path) -> None:
    site = write_site(tmp_path)
    broken = site.folder / "zqbroken-evidence.json"
    broken.write_text('{"facts": [\n  {"kind": "dns.resolution",\n', encoding="utf-8")  # cut short
    done = run_cli(
        "collect",
        "--profile",
        str(site.profile),
        "--evidence",
        str(broken),
        "--offline",
        "--redact",
        "-o",
        str(tmp_path / "bundle.json"),
    )
    assert done.returncode == 2 and done.stderr.count("diagnose: error: ") == 1, done.stderr
    assert re.search(r"DIR-\d+/dir-\d+/file-\d+\.json:\d+", done.stderr), done.stderr  # the place, redacted
    assert not leaks(done.stderr, {*TOKENS, "zqbroken"}), done.stderr


def test_paths_are_redacted_component_by_component() -> None:
    from diagnose.redact import Redactor

    r = Redactor()
    r.paths(
        ["/srv/CASE-4711/LON7site/acme-logs.zip!zqdir/ISALOG_ZQ_FWS.w3c", "C:\\Evidence\\Site Qz9\\trace-zq.pcap.gz"]
    )
    text = r.text(
        "read /srv/CASE-4711/LON7site/acme-logs.zip!zqdir/ISALOG_ZQ_FWS.w3c:7 and "
        "C:\\Evidence\\Site Qz9\\trace-zq.pcap.gz; acme-logs.zip holds ISALOG_ZQ_FWS.w3c"
    )
    for original in ("CASE-4711", "LON7site", "acme-logs", "zqdir", "ISALOG_ZQ", "Evidence", "Site Qz9", "trace-zq"):
        assert original.lower() not in text.lower(), (original, text)
    assert text.startswith("read /srv/") and ".zip!" in text and ".w3c:7" in text and ".pcap.gz" in text
    r.paths(["/srv/L7/NY/q.w3c"])  # a site code too short to be a word of its own: replaced in paths
    short = r.text("/srv/L7/NY/q.w3c:3; NY and L7 stay as words")
    assert re.fullmatch(r"/srv/dir-\d+/DIR-\d+/file-\d+\.w3c:3; NY and L7 stay as words", short, re.I), short
    same = re.findall(r"(?i)file-\d+\.w3c", text)
    assert len(same) == 2 and same[0] == same[1]  # one token for one name, wherever it stands
