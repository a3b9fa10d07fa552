"""`--redact`: no original address, name or user survives in a bundle or a report; the diagnosis is unchanged.

The originals are discovered from the unredacted bundle of each example (facts, profile, provenance,
excerpts, reasons), independently of `diagnose.redact`, so the test follows the examples as they change.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from diagnose.facts import Fact, Provenance, bundle_from_json, make_fact
from diagnose.profile import profile_from_mapping
from diagnose.redact import Redactor
from tests.conftest import REPO, run_cli

EXAMPLES = sorted(p.parent.name for p in (REPO / "examples").glob("*/example.yaml"))
FORMATS = ("text", "json", "markdown", "html")

# ----------------------------------------------------------------------------- discovering the originals

TLDS = {
    "com",
    "net",
    "org",
    "local",
    "lan",
    "internal",
    "corp",
    "example",
    "test",
    "info",
    "biz",
    "io",
    "co",
    "localdomain",
    "intranet",
    "de",
    "uk",
    "fr",
    "nl",
    "ch",
    "at",
    "eu",
    "us",
}
GENERIC_LABELS = {"mail", "owa", "www", "autodiscover", "webmail", "remote", "exchange", "outlook", "smtp", "co"}
NOT_USERS = {"", "-", "anonymous", "system", "public", "default"}
NAME_ATTRS = {
    "host",
    "hostname",
    "fqdn",
    "sni",
    "subject_cn",
    "san_dns",
    "cname_chain",
    "mismatched",
    "unresolved",
    "unmatched_names",
    "published_names",
    "internal_name",
    "certificate_fqdn",
}
V4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\d)")
V6 = re.compile(r"(?<![\w.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:(?<=:)\d{1,3}(?:\.\d{1,3}){3})?")
DOTTED = re.compile(r"(?<![\w.-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+([A-Za-z]{2,})(?![\w-])")
DOMAIN_USER = re.compile(r"(?<![\w\\:])([A-Za-z][\w-]{0,14})\\([\w.$-]*\w)(?![\w\\])")
MAIL_USER = re.compile(r"([\w.+-]*\w)@((?:[\w-]+\.)+[A-Za-z]{2,})")
COMPUTER_FIELD = re.compile(r"(?=[A-Z0-9-]*\d)[A-Z][A-Z0-9-]{1,14}")  # TMG01: a log record's computer column
HOME_USER = re.compile(r"(?i)[\\/](?:users|home)[\\/]([^\\/\s\"']+)")


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


@dataclass
class Originals:
    addresses: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)

    def all(self) -> set[str]:
        return self.addresses | self.names | self.users

    def add_name(self, value: str) -> None:
        value = value.strip().rstrip(".").lstrip("*.").lower()
        if not value or _is_ip(value):
            return
        host = value.rsplit(":", 1)[0] if re.search(r":\d+$", value) else value
        labels = host.split(".")
        self.names.add(host)
        for i in range(1, len(labels) - 1):  # parent domains: contoso.com, contoso.local
            self.names.add(".".join(labels[i:]))
        for i, label in enumerate(labels):  # cas01, contoso (not the top-level label, not generic words)
            if (len(labels) == 1 or i < len(labels) - 1) and len(label) >= 4 and label not in GENERIC_LABELS:
                self.names.add(label)

    def add_user(self, value: str) -> None:
        value = value.strip()
        if "\\" in value:
            domain, value = value.rsplit("\\", 1)
            self.add_name(domain)
        if "@" in value:
            value, domain = value.split("@", 1)
            self.add_name(domain)
        if value.lower() not in NOT_USERS:
            self.users.add(value.lower())


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return False
    return True


def originals_of(bundle: dict[str, Any]) -> Originals:
    found = Originals()
    texts: list[str] = []
    for fact in bundle["facts"]:
        texts.append(fact["subject"])
        texts += strings(fact.get("attrs", {}))
        texts += strings(fact.get("provenance", {}))
        for key, value in fact.get("attrs", {}).items():
            values = value if isinstance(value, list) else [value]
            for v in values:
                if not isinstance(v, str):
                    continue
                if key in NAME_ATTRS or (key == "name" and fact["kind"].startswith("dns.")):
                    found.add_name(v)
                if "user" in key or key == "account":
                    found.add_user(v)
        if fact["kind"] == "dns.resolution":
            found.add_name(fact["subject"])
        if fact["kind"].startswith("service.") and "/" in fact["subject"]:
            found.add_name(fact["subject"].split("/", 1)[0])
    profile = bundle.get("profile", {})
    for key in ("published_names", "internal_name", "certificate_fqdn"):
        for v in strings(profile.get(key, [])):
            found.add_name(v)
    texts += strings(profile)
    texts += strings(bundle.get("answers", {}))
    texts += strings(bundle.get("excerpts", {}))
    for line in bundle.get("excerpts", {}).values():
        if line.count("\t") >= 4:
            for column in line.split("\t"):
                if COMPUTER_FIELD.fullmatch(column) and not re.fullmatch(r"W3SVC\d*|HTTP\d?|TLS\d*", column):
                    found.add_name(column)
    texts += [p.get("reason", "") for p in bundle.get("probes", [])]
    texts.append(bundle.get("description", ""))
    for text in texts:
        for m in V4.finditer(text):
            if _is_ip(m.group(0)):
                found.addresses.add(m.group(0))
        for m in V6.finditer(text):
            candidate = m.group(0)
            for form in (candidate, candidate.rsplit(":", 1)[0], candidate.rstrip(":")):
                if form.count(":") >= 2 and _is_ip(form):
                    found.addresses.add(form.lower())
                    break
        for m in DOTTED.finditer(text):
            if m.group(1).lower() in TLDS:
                found.add_name(m.group(0))
        for m in DOMAIN_USER.finditer(text):
            if m.group(1).upper() not in ("NT", "AUTHORITY", "BUILTIN"):
                found.add_user(m.group(0))
        for m in MAIL_USER.finditer(text):
            found.add_user(m.group(0))
        for m in HOME_USER.finditer(text):
            found.add_user(m.group(1))
    return found


def leaks(originals: set[str], artefact: str) -> set[str]:
    """Originals found in an artefact: as written, JSON-decoded, and with wrapped lines joined."""
    views = [artefact, re.sub(r"\n\s*", "", artefact), re.sub(r"\s+", " ", artefact)]
    with contextlib.suppress(ValueError):
        views.append("\n".join(strings(json.loads(artefact))))
    hay = "\n".join(views).lower()
    return {o for o in originals if re.search(r"(?<![a-z0-9])" + re.escape(o.lower()) + r"(?![a-z0-9])", hay)}


def ranking(report: dict[str, Any]) -> tuple[str, list[tuple[str, float]]]:
    return report["verdict"], [(c["id"], c["certainty"]) for c in report["causes"]]


def diagnose_ok(*args: str) -> str:
    result = run_cli(*args)
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


# ----------------------------------------------------------------------------- the Done-when test


def test_examples_are_found():
    assert {"seed", "dns-mismatch", "fba-stopped"} <= set(EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES)
def test_redacted_example_leaks_nothing_and_keeps_the_diagnosis(example, tmp_path):
    plain_bundle = tmp_path / "plain.json"
    plain = json.loads(
        diagnose_ok("run", "--example", example, "--format", "json", "--save-evidence", str(plain_bundle))
    )
    original = json.loads(plain_bundle.read_text(encoding="utf-8"))
    found = originals_of(original)
    assert found.addresses or found.names, "the example holds no identifying value to redact"
    secrets = found.all()

    for fmt in FORMATS:
        bundle = tmp_path / f"redacted-{fmt}.json"
        report = diagnose_ok("run", "--example", example, "--redact", "--save-evidence", str(bundle), "--format", fmt)
        raw = bundle.read_bytes().decode("utf-8")
        assert not leaks(secrets, raw), f"{example}: bundle (run --format {fmt}) leaks"
        assert not leaks(secrets, report), f"{example}: {fmt} report leaks"
        assert raw != plain_bundle.read_text(encoding="utf-8")
        if fmt == "json":
            redacted = json.loads(report)
            assert ranking(redacted) == ranking(plain)
            assert [c["references"] for c in redacted["causes"]] == [c["references"] for c in plain["causes"]]
            assert [c["remediation"] for c in redacted["causes"]] == [c["remediation"] for c in plain["causes"]]
            assert [u["rule"] for u in redacted["unknowns"]] == [u["rule"] for u in plain["unknowns"]]
            # the same redacted bundle analysed elsewhere gives the same diagnosis, and still leaks nothing
            again = diagnose_ok("analyze", str(bundle), "--format", "json")
            assert ranking(json.loads(again)) == ranking(plain)
            assert not leaks(secrets, again)


@pytest.mark.parametrize("example", ["seed", "dns-mismatch"])
def test_collect_and_analyze_redact(example, tmp_path):
    plain_bundle, redacted_bundle = tmp_path / "plain.json", tmp_path / "redacted.json"
    diagnose_ok("collect", "--example", example, "--quiet", "-o", str(plain_bundle))
    diagnose_ok("collect", "--example", example, "--quiet", "--redact", "-o", str(redacted_bundle))
    found = originals_of(json.loads(plain_bundle.read_text(encoding="utf-8")))
    assert found.addresses and found.names
    secrets = found.all()
    assert not leaks(secrets, redacted_bundle.read_text(encoding="utf-8"))
    plain = json.loads(diagnose_ok("analyze", str(plain_bundle), "--format", "json"))
    for fmt in FORMATS:
        report = diagnose_ok("analyze", str(plain_bundle), "--redact", "--format", fmt)
        assert not leaks(secrets, report), fmt
        if fmt == "json":
            assert ranking(json.loads(report)) == ranking(plain)
    assert ranking(json.loads(diagnose_ok("analyze", str(redacted_bundle), "--format", "json"))) == ranking(plain)


# ----------------------------------------------------------------------------- the Redactor itself


def test_same_input_same_token_different_input_different_token():
    r = Redactor()
    assert r.address("10.1.5.11") == r.address("10.1.5.11") != r.address("10.1.5.12")
    assert r.name("mail.contoso.com") == r.name("MAIL.contoso.com".lower()) != r.name("owa.contoso.com")
    assert r.user("CONTOSO\\jdoe") == r.user("CONTOSO\\jdoe") != r.user("CONTOSO\\asmith")
    assert r.text("from 10.1.5.11 to 10.1.5.11") == f"from {r.address('10.1.5.11')} to {r.address('10.1.5.11')}"
    # a name is the same token in a structured field and in free text
    assert r.text("https://mail.contoso.com/owa/") == f"https://{r.name('mail.contoso.com')}/owa/"
    # a fresh redactor (another bundle) has its own table, numbered from the start
    other = Redactor()
    assert other.address("10.9.9.9") == r.address("10.1.5.11") == "ip-int-1"


def test_tokens_keep_the_address_class():
    r = Redactor()
    cases = {
        "10.1.5.11": "ip-int-",
        "172.16.0.4": "ip-int-",
        "192.168.1.20": "ip-int-",
        "100.64.0.1": "ip-int-",
        "203.0.113.10": "ip-ext-",
        "8.8.8.8": "ip-ext-",
        "127.0.0.1": "ip-lo-",
        "169.254.10.1": "ip-ll-",
        "224.0.0.251": "ip-mc-",
        "0.0.0.0": "ip-any-",
        "fd12:3456::1": "ip6-int-",
        "2001:db8::1": "ip6-ext-",
        "fe80::1": "ip6-ll-",
        "::1": "ip6-lo-",
    }
    for address, prefix in cases.items():
        token = r.address(address)
        assert token.startswith(prefix) and token[len(prefix) :].isdigit(), (address, token)
        assert address not in token


def test_ipv6_forms_and_ports():
    r = Redactor()
    token = r.address("2001:db8::5")
    assert r.address("2001:0DB8:0:0::5") == token  # the same address written differently
    assert r.text("[2001:db8::5]:443") == f"[{token}]:443"
    assert r.text("server:2001:db8::5:443") == f"server:{token}:443"
    assert r.text("peer fe80::1%eth0 up") == f"peer {r.address('fe80::1')}%eth0 up"
    assert r.text("::ffff:10.1.5.11") == "::ffff:" + r.address("10.1.5.11")
    assert r.text("2001:db8::5.") == token + "."


def test_ip_port_and_flows():
    r = Redactor()
    tmg, cas = r.address("10.1.4.98"), r.address("10.1.5.11")
    assert r.text("10.1.4.98:31024>10.1.5.11:443") == f"{tmg}:31024>{cas}:443"
    assert r.text("server:10.1.5.11:443") == f"server:{cas}:443"
    assert r.text("resolves to 10.1.5.11.") == f"resolves to {cas}."
    assert r.name("10.1.5.11:443") == f"{cas}:443"


def test_names_keep_their_relations():
    r = Redactor()
    fqdn, short = r.name("cas01.contoso.local"), r.name("CAS01")
    assert short.lower() == fqdn.split(".")[0]  # the host label of its FQDN
    assert r.name("mail.contoso.com").split(".")[1] == fqdn.split(".")[1]  # same domain label
    assert fqdn.endswith(".local") and r.name("mail.contoso.com").endswith(".com")  # internal vs public suffix
    assert r.name("*.contoso.com") == "*." + r.name("contoso.com")
    assert r.user("CONTOSO\\jdoe").split("\\")[0].lower() == fqdn.split(".")[1]  # NetBIOS domain = domain label
    assert r.user("jdoe@contoso.com") == r.user("CONTOSO\\jdoe").split("\\")[1] + "@" + r.name("contoso.com")
    for text in (fqdn, short, r.user("CONTOSO\\jdoe")):
        assert "contoso" not in text.lower() and "cas01" not in text.lower() and "jdoe" not in text


def test_learnt_words_are_replaced_in_free_text():
    r = Redactor()
    r.name("CAS01")
    r.name("mail.contoso.com")
    assert (
        r.text("/cases/cas01-services.csv from the Contoso OWA rule")
        == f"/cases/{r.name('cas01')}-services.csv from the {r.name('contoso.com').split('.')[0]} OWA rule"
    )


def test_users_in_text_and_paths():
    r = Redactor()
    out = r.text(
        "CONTOSO\\jdoe via NT AUTHORITY\\SYSTEM, anonymous; C:\\Users\\jdoe\\Desktop\\trace.cap; "
        "/home/asmith/cases; C:\\Program Files\\Microsoft Forefront TMG\\ISALogs\\ISALOG_20110504_FWS_000.w3c"
    )
    assert "jdoe" not in out and "asmith" not in out and "CONTOSO" not in out
    assert "NT AUTHORITY\\SYSTEM" in out and "anonymous" in out
    assert "C:\\Program Files\\Microsoft Forefront TMG\\ISALogs\\ISALOG_20110504_FWS_000.w3c" in out
    assert r.text("\\\\CAS01\\c$\\logs") == "\\\\" + r.name("CAS01") + "\\c$\\logs"
    assert r.user("anonymous") == "anonymous" and r.user("-") == "-"


NON_IDENTIFYING = [
    "MSExchangeFBA",
    "MSExchangeRPC",
    "W3SVC",
    "/owa/",
    "/rpc/rpcproxy.dll",
    "RPC_IN_DATA",
    "/Microsoft-Server-ActiveSync",
    "0x80074E24",
    "FWX_E_CONNECTION_KILLED",
    "12227",
    "SEC_E_WRONG_PRINCIPAL",
    "dirty-close",
    "reset-after-own-fin",
    "Status 64",
    "ERROR_NETNAME_DELETED",
    "ISALOG_20261127_WEB_000.w3c:77",
    "netmon-trace.txt frames 1348, 1349, 1410",
    "dns.resolution",
    "log.status_summary",
    "site.profile",
    "wspsrv.exe",
    "2011-05-04T11:34:15Z",
    "11:34:15",
    "Microsoft Exchange Forms-Based Authentication service",
    "Win32_Service Running",
    "outlook-anywhere",
    "TCP",
]


def test_non_identifying_values_survive():
    r = Redactor()
    r.name("cas01.contoso.local")
    r.user("CONTOSO\\jdoe")
    for text in NON_IDENTIFYING:
        assert r.text(text) == text


def _fact(kind: str, subject: str, **attrs: Any) -> Fact:
    return make_fact(kind, subject, "test", source="C:\\Users\\jdoe\\trace.txt", location="frame 7", attrs=attrs)


def test_bundle_fields_are_redacted_and_structure_kept():
    facts = (
        _fact(
            "service.state",
            "CAS01/MSExchangeFBA",
            name="MSExchangeFBA",
            state="stopped",
            start_type="automatic",
            host="CAS01",
            display_name="Microsoft Exchange Forms-Based Authentication service",
        ),
        _fact(
            "dns.resolution",
            "mail.contoso.com",
            name="mail.contoso.com",
            role="published",
            source="dns",
            server="10.1.4.1:53",
            outcome="ok",
            addresses=["203.0.113.10"],
            matches_internal=False,
        ),
        _fact(
            "capture.connection",
            "10.1.4.98:31024>10.1.5.11:443",
            originator="10.1.4.98:31024",
            responder="10.1.5.11:443",
            teardown="dirty-close",
            leg="server",
            conn_state="RSTO",
            history="fAR",
        ),
        _fact(
            "log.status_summary",
            "rule:Contoso OWA",
            scope="rule",
            rule="Contoso OWA",
            status64_count=3,
            samples=["ISALOG_20261127_WEB_000.w3c:77"],
            client_username="CONTOSO\\jdoe",
        ),
    )
    bundle = bundle_from_json(
        {
            "format_version": 1,
            "facts": [f.to_json() for f in facts],
            "profile": {
                "published_names": ["mail.contoso.com"],
                "certificate_fqdn": "mail.contoso.com",
                "internal_name": "cas01.contoso.local",
                "internal_addresses": ["10.1.5.11"],
                "tmg_addresses": ["10.1.4.98"],
                "published": ["owa"],
                "exchange_version": "2010",
                "hosts_file": "C:\\Windows\\System32\\drivers\\etc\\hosts",
            },
            "answers": {"users-report-failures": "yes"},
            "excerpts": {
                "ISALOG_20261127_WEB_000.w3c:77": "2026-11-27\t10:15:02\t203.0.113.77\tCONTOSO\\jdoe\tmail.contoso.com\t10.1.5.11\t443\t64"
            },
            "probes": [{"probe": "dns", "status": "partial", "reason": "10.1.4.1 timed out for cas01.contoso.local"}],
            "description": "CAS01 behind TMG 10.1.4.98",
        },
        "test",
    )
    out = Redactor().bundle(bundle)
    dumped = json.dumps({**out.to_json(), "created": ""})
    for secret in ("contoso", "cas01", "jdoe", "10.1.", "203.0.113"):
        assert secret not in dumped.lower()
    service, dns, conn, log = out.facts
    assert (service.attrs["name"], service.attrs["state"], service.attrs["start_type"]) == (
        "MSExchangeFBA",
        "stopped",
        "automatic",
    )
    assert service.subject == f"{service.attrs['host']}/MSExchangeFBA"
    assert dns.subject == dns.attrs["name"] == out.profile["published_names"][0] == out.profile["certificate_fqdn"]
    assert dns.attrs["source"] == "dns" and dns.attrs["matches_internal"] is False
    assert dns.attrs["addresses"][0].startswith("ip-ext-") and dns.attrs["server"].endswith(":53")
    assert conn.subject == f"{conn.attrs['originator']}>{conn.attrs['responder']}"
    assert conn.attrs["responder"] == out.profile["internal_addresses"][0] + ":443"
    assert conn.attrs["originator"] == out.profile["tmg_addresses"][0] + ":31024"
    assert (conn.attrs["teardown"], conn.attrs["leg"], conn.attrs["history"]) == ("dirty-close", "server", "fAR")
    assert log.attrs["samples"] == ("ISALOG_20261127_WEB_000.w3c:77",) and log.attrs["status64_count"] == 3
    assert log.subject == "rule:" + log.attrs["rule"] and re.fullmatch(r"rule-\d+", log.attrs["rule"])  # TMG rule name
    assert log.attrs["client_username"].split("\\")[1].startswith("user-")
    assert out.profile["published"] == ["owa"] and out.profile["exchange_version"] == "2010"
    assert out.profile["hosts_file"] == "C:\\Windows\\System32\\drivers\\etc\\hosts"
    assert out.answers == {"users-report-failures": "yes"}
    assert service.provenance == Provenance(
        "test", None, "C:\\Users\\user-1\\trace.txt", "frame 7", service.provenance.time
    )
    assert "\t64" in next(iter(out.excerpts.values()))
    # the redacted profile is still a valid profile, and redacting again changes nothing
    profile_from_mapping(out.profile, "redacted")
    again = Redactor().bundle(out)
    assert again.to_json() == out.to_json()
