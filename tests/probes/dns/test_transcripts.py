"""Recorded nslookup and Resolve-DnsName output, replayed through the real CLI (`diagnose probe dns ...
--dns-recorded FILE --offline`, `diagnose run --dns-recorded FILE`).

BIND's nslookup (bind9-dnsutils) is run here for real against the loopback DNS server of the DNS
tests. Windows nslookup.exe and Resolve-DnsName cannot run here: their output is recorded text in
tests/data/dns/, in the exact format they print (the sources of each format fact are in the docstrings
of diagnose/probes/dns/recorded/nslookup.py and powershell.py).
"""

from __future__ import annotations

import codecs
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from diagnose.compat import removeprefix
from diagnose.probes.dns.recorded import read_recorded
from tests.conftest import REPO, run_cli
from tests.servers import DnsServer

DATA = REPO / "tests" / "data" / "dns"
EXAMPLE = REPO / "examples" / "dns-mismatch"
ZONE = {
    "mail.contoso.com": {"A": ["127.0.0.200"], "AAAA": ["2001:db8::10"]},
    "webmail.contoso.com": {"CNAME": "cas01.contoso.local"},
    "cas01.contoso.local": {"A": ["127.0.0.10"]},
    "v6only.contoso.com": {"AAAA": ["2001:db8::6"]},
    "noaddr.contoso.com": {"TXT": ["v=spf1 -all"]},
    "owa.contoso.com": {"A": ["127.0.0.10"]},
}
needs_nslookup = pytest.mark.skipif(
    shutil.which("nslookup") is None, reason="nslookup (bind9-dnsutils) is not installed"
)


class AaaaFailing(DnsServer):
    """Answers A queries from its zone and SERVFAIL to every AAAA query."""

    def answer(self, wire: bytes, transport: str) -> bytes | None:
        query = dns.message.from_wire(wire)
        if query.question[0].rdtype == dns.rdatatype.AAAA:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        return super().answer(wire, transport)


def nslookup(*args: str) -> str:
    """One real nslookup run, as a terminal shows it: the prompt line, then what it printed."""
    proc = subprocess.run(["nslookup", *args], capture_output=True, text=True, timeout=20)
    return f"$ nslookup {' '.join(args)}\n{proc.stdout}{proc.stderr}"


def resolutions(path: Path | str, *names: str, extra: tuple[str, ...] = ()) -> dict[tuple[str, str], dict[str, Any]]:
    """`diagnose probe dns NAMES --dns-recorded PATH --offline`: each name's answer per recorded server."""
    proc = run_cli(
        "probe", "dns", *names, "--dns-recorded", str(path), "--offline", "--no-hosts", "--format", "json", *extra
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["probe"]["status"] == "complete"
    return {
        (f["subject"], f["attrs"]["server"]): {**f["attrs"], "location": f["provenance"]["location"]}
        for f in out["facts"]
        if f["kind"] == "dns.resolution"
    }


def summary(facts: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], tuple]:
    return {key: (f["outcome"], tuple(f["addresses"]), tuple(f.get("cname_chain") or ())) for key, f in facts.items()}


def cli_error(path: Path) -> str:
    proc = run_cli("probe", "dns", "mail.contoso.com", "--dns-recorded", str(path), "--offline", "--no-hosts")
    assert proc.returncode == 2, proc.stdout
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return removeprefix(proc.stderr.strip(), "diagnose: error: ")


# ------------------------------------------------------------------------------ BIND nslookup, run here


@pytest.fixture(scope="module")
def bind_recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    if shutil.which("nslookup") is None:
        pytest.skip("nslookup (bind9-dnsutils) is not installed")
    out, servers = [], {}
    with DnsServer(ZONE, rcodes={"autodiscover.contoso.com": "SERVFAIL"}) as site:
        port = f"-port={site.port}"
        for name in (
            "mail.contoso.com",
            "webmail.contoso.com",
            "autodiscover.contoso.com",
            "legacy.contoso.com",
            "v6only.contoso.com",
            "noaddr.contoso.com",
        ):
            out.append(nslookup(port, name, "127.0.0.1"))
        out.append(nslookup(port, "-type=AAAA", "owa.contoso.com", "127.0.0.1"))
        servers["site"] = site.address
    with DnsServer(ZONE, refuse_all=True) as refusing:
        out.append(nslookup(f"-port={refusing.port}", "mail.contoso.com", "127.0.0.1"))
        servers["refusing"] = refusing.address
    with AaaaFailing(ZONE) as aaaa_failing:
        out.append(nslookup(f"-port={aaaa_failing.port}", "webmail.contoso.com", "127.0.0.1"))
        servers["aaaa-failing"] = aaaa_failing.address
    with DnsServer({}, silent=["*"]) as silent:
        out.append(nslookup(f"-port={silent.port}", "-timeout=1", "-retry=1", "cas01.contoso.local", "127.0.0.1"))
        servers["silent"] = silent.address
    path = tmp_path_factory.mktemp("bind") / "nslookup.txt"
    path.write_text("".join(out), encoding="utf-8")
    return path, servers


@needs_nslookup
def test_bind_nslookup_every_outcome(bind_recording: tuple[Path, dict[str, str]]) -> None:
    path, servers = bind_recording
    site, refusing, silent = servers["site"], servers["refusing"], servers["silent"]
    facts = resolutions(
        path,
        "mail.contoso.com",
        "webmail.contoso.com",
        "autodiscover.contoso.com",
        "legacy.contoso.com",
        "v6only.contoso.com",
        "noaddr.contoso.com",
        "owa.contoso.com",
        "cas01.contoso.local",
    )
    got = summary(facts)
    assert got[("mail.contoso.com", site)] == ("ok", ("127.0.0.200", "2001:db8::10"), ())
    assert got[("webmail.contoso.com", site)] == ("ok", ("127.0.0.10",), ("cas01.contoso.local",))
    assert got[("autodiscover.contoso.com", site)] == ("servfail", (), ())
    assert got[("legacy.contoso.com", site)] == ("nxdomain", (), ())
    assert got[("v6only.contoso.com", site)] == ("ok", ("2001:db8::6",), ())
    assert got[("noaddr.contoso.com", site)] == ("no-answer", (), ())
    assert got[("owa.contoso.com", site)] == ("no-answer", (), ())  # -type=AAAA: "*** Can't find ...: No answer"
    assert got[("mail.contoso.com", refusing)] == ("refused", (), ())
    assert got[("cas01.contoso.local", silent)] == ("timeout", (), ())
    assert facts[("mail.contoso.com", site)]["location"] == "line 1"
    assert facts[("mail.contoso.com", site)]["effective"] is True  # the first recorded server settles it


@needs_nslookup
def test_bind_aaaa_failure_after_the_a_answer_is_the_aaaa_queries(bind_recording: tuple[Path, dict[str, str]]) -> None:
    path, servers = bind_recording
    (server,) = [s for s in read_recorded(path) if s.label == servers["aaaa-failing"]]
    qname = dns.name.from_text("webmail.contoso.com")
    a, aaaa = server.lookup(qname, dns.rdatatype.A), server.lookup(qname, dns.rdatatype.AAAA)
    assert a is not None and aaaa is not None
    assert a.rcode == dns.rcode.NOERROR and [r.to_text() for r in a.answer] == [
        "webmail.contoso.com. 0 IN CNAME cas01.contoso.local.",
        "cas01.contoso.local. 0 IN A 127.0.0.10",
    ]
    assert aaaa.rcode == dns.rcode.SERVFAIL  # "** server can't find cas01.contoso.local: SERVFAIL" after the A answer
    assert [r.to_text() for r in aaaa.answer] == ["webmail.contoso.com. 0 IN CNAME cas01.contoso.local."]
    # the site server printed no AAAA failure for cas01's A-only name: its AAAA has no data
    (site,) = [s for s in read_recorded(path) if s.label == servers["site"]]
    webmail_aaaa = site.lookup(qname, dns.rdatatype.AAAA)
    assert webmail_aaaa is not None and webmail_aaaa.rcode == dns.rcode.NOERROR
    assert site.lookup(dns.name.from_text("legacy.contoso.com"), dns.rdatatype.AAAA) is None  # an A failure ends it


@needs_nslookup
def test_bind_output_without_prompt_lines(bind_recording: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    path, servers = bind_recording
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    timeout_prompt = next(i for i, line in enumerate(lines) if line.startswith("$ ") and "cas01" in line)
    bare = tmp_path / "bare.txt"
    bare.write_text("".join(line for line in lines[:timeout_prompt] if not line.startswith("$ ")), encoding="utf-8")
    with_prompts = summary(resolutions(path, "mail.contoso.com", "webmail.contoso.com", "legacy.contoso.com"))
    without = summary(resolutions(bare, "mail.contoso.com", "webmail.contoso.com", "legacy.contoso.com"))
    assert without == {k: v for k, v in with_prompts.items() if k[1] != servers["silent"]}
    # a run that timed out prints no header and no name: without its command line it cannot be told
    bare.write_text("".join(line for line in lines if not line.startswith("$ ")), encoding="utf-8")
    first_of_timeout = timeout_prompt - sum(1 for line in lines[:timeout_prompt] if line.startswith("$ ")) + 1
    assert cli_error(bare) == (
        f"{bare}:{first_of_timeout}: cannot tell which name this nslookup run asked for "
        "(keep the command line, e.g. `C:\\>nslookup NAME SERVER`, in the file)"
    )


@needs_nslookup
def test_bind_session_fed_from_a_pipe_invents_no_record_type(tmp_path: Path) -> None:
    """Commands piped into nslookup are not echoed: `set type=A` is invisible, so AAAA is not recorded."""
    with DnsServer(ZONE) as server:
        proc = subprocess.run(
            ["nslookup", f"-port={server.port}", "-", "127.0.0.1"],
            capture_output=True,
            text=True,
            input="set type=A\nmail.contoso.com\nlegacy.contoso.com\n",
            timeout=20,
        )
    piped = tmp_path / "piped.txt"
    piped.write_text(proc.stdout, encoding="utf-8")
    (recorded,) = read_recorded(piped)
    mail, legacy = dns.name.from_text("mail.contoso.com"), dns.name.from_text("legacy.contoso.com")
    assert [r.to_text() for r in recorded.lookup(mail, dns.rdatatype.A).answer] == [
        "mail.contoso.com. 0 IN A 127.0.0.200"
    ]
    assert recorded.lookup(mail, dns.rdatatype.AAAA) is None  # the zone has one, but this run never asked
    assert recorded.lookup(legacy, dns.rdatatype.A).rcode == dns.rcode.NXDOMAIN


@needs_nslookup
def test_bind_interactive_session_in_a_terminal(tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    with DnsServer(ZONE) as server:
        command = ["nslookup", f"-port={server.port}", "-", "127.0.0.1"]
        child = pexpect.spawn(command[0], command[1:], encoding="utf-8", timeout=10)
        seen: list[str] = []
        child.logfile_read = type(
            "Log", (), {"write": lambda _self, text: seen.append(text), "flush": lambda _self: None}
        )()
        child.expect("> ")
        for line in ("set type=A", "mail.contoso.com", "set type=AAAA", "mail.contoso.com", "legacy.contoso.com"):
            child.sendline(line)
            child.expect("> ")
        child.sendline("exit")
        child.expect(pexpect.EOF)
    transcript = tmp_path / "session.txt"
    transcript.write_bytes(f"$ {' '.join(command)}\r\n{''.join(seen)}".encode())  # a terminal's CRLF line ends
    assert b"\r\n> set type=AAAA\r\n" in transcript.read_bytes()
    (recorded,) = read_recorded(transcript)
    mail, legacy = dns.name.from_text("mail.contoso.com"), dns.name.from_text("legacy.contoso.com")
    assert [r.to_text() for r in recorded.lookup(mail, dns.rdatatype.A).answer] == [
        "mail.contoso.com. 0 IN A 127.0.0.200"
    ]
    assert [r.to_text() for r in recorded.lookup(mail, dns.rdatatype.AAAA).answer] == [
        "mail.contoso.com. 0 IN AAAA 2001:db8::10"
    ]
    assert recorded.lookup(legacy, dns.rdatatype.AAAA).rcode == dns.rcode.NXDOMAIN  # asked under set type=AAAA
    assert recorded.lookup(legacy, dns.rdatatype.A) is None


# ------------------------------------------------------------------ Windows nslookup.exe, recorded text

WINDOWS_NAMES = (
    "mail.contoso.com",
    "webmail.contoso.com",
    "cas01.contoso.local",
    "legacy.contoso.com",
    "owa.contoso.com",
    "autodiscover.contoso.com",
)


def test_windows_nslookup_every_outcome() -> None:
    path = DATA / "windows-nslookup-cmd.txt"
    assert b"\r\n" in path.read_bytes() and b"\n\t  10.1.5.11" in path.read_bytes()
    facts = resolutions(path, *WINDOWS_NAMES, extra=("--expect", "10.1.5.11"))
    got = summary(facts)
    dc1 = "10.1.4.1:53"
    assert got[("mail.contoso.com", dc1)] == ("ok", ("203.0.113.10",), ())
    assert got[("cas01.contoso.local", dc1)] == ("ok", ("10.1.5.11", "fd00:10:1:5::11"), ())
    assert got[("webmail.contoso.com", dc1)] == ("ok", ("10.1.5.11", "fd00:10:1:5::11"), ("cas01.contoso.local",))
    assert got[("legacy.contoso.com", dc1)] == ("nxdomain", (), ())
    assert got[("owa.contoso.com", dc1)] == ("no-answer", (), ())  # "*** No internal type for both ... (A+AAAA)"
    assert got[("autodiscover.contoso.com", "10.1.4.2:53")] == ("servfail", (), ())  # "Server:  UnKnown"
    assert got[("mail.contoso.com", "10.1.4.3:53")] == ("refused", (), ())
    assert got[("mail.contoso.com", "10.1.4.9:53")] == ("timeout", (), ())  # "*** Request to UnKnown timed-out"
    # the interactive session after `ipconfig /flushdns` (skipped): `set type=A`, then `server 10.1.4.5`
    assert got[("mail.contoso.com", "10.1.4.5:53")] == ("ok", ("10.1.5.11",), ())
    assert facts[("mail.contoso.com", "10.1.4.5:53")]["location"] == "line 92"
    assert facts[("mail.contoso.com", dc1)]["effective"] and not facts[("mail.contoso.com", dc1)]["matches_internal"]
    assert facts[("mail.contoso.com", "10.1.4.5:53")]["matches_internal"]


def test_windows_nslookup_saved_by_powershell_is_utf16(tmp_path: Path) -> None:
    """`nslookup ... > dns.txt` in Windows PowerShell 5.1 writes UTF-16LE with a byte-order mark."""
    text = (DATA / "windows-nslookup-cmd.txt").read_bytes().decode("ascii")
    utf16 = tmp_path / "dns.txt"
    utf16.write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    assert summary(resolutions(utf16, *WINDOWS_NAMES)) == summary(
        resolutions(DATA / "windows-nslookup-cmd.txt", *WINDOWS_NAMES)
    )


def test_windows_nslookup_error_output_out_of_order_and_wrapped() -> None:
    # Git Bash: the error stream arrives before the buffered standard output
    got = summary(
        resolutions(
            DATA / "windows-nslookup-gitbash.txt", "mail.contoso.com", "legacy.contoso.com", "webmail.contoso.com"
        )
    )
    assert got == {
        ("mail.contoso.com", "10.1.4.1:53"): ("ok", ("203.0.113.10",), ()),
        ("legacy.contoso.com", "10.1.4.1:53"): ("nxdomain", (), ()),
        ("webmail.contoso.com", "10.1.4.5:53"): ("ok", ("10.1.5.11", "fd00:10:1:5::11"), ("cas01.contoso.local",)),
    }
    # Windows PowerShell `2>&1 >>`: no prompts, UTF-16, the first error line wrapped as a NativeCommandError
    got = summary(resolutions(DATA / "windows-nslookup-powershell.txt", "mail.contoso.com", "legacy.contoso.com"))
    assert got == {
        ("mail.contoso.com", "10.1.4.5:53"): ("ok", ("10.1.5.11",), ()),
        ("legacy.contoso.com", "10.1.4.1:53"): ("nxdomain", (), ()),
    }


def test_windows_nslookup_localised_zh_cn() -> None:
    got = summary(
        resolutions(
            DATA / "windows-nslookup-zh-cn.txt", "mail.contoso.com", "webmail.contoso.com", "autodiscover.contoso.com"
        )
    )
    assert got == {
        ("mail.contoso.com", "10.1.4.1:53"): ("ok", ("203.0.113.10",), ()),
        ("mail.contoso.com", "10.1.4.9:53"): ("timeout", (), ()),
        ("webmail.contoso.com", "10.1.4.5:53"): ("ok", ("10.1.5.11", "fd00:10:1:5::11"), ("cas01.contoso.local",)),
        ("autodiscover.contoso.com", "10.1.4.2:53"): ("servfail", (), ()),
    }


def test_windows_nslookup_french_in_the_oem_code_page(tmp_path: Path) -> None:
    """`nslookup ... > dns.txt` in cmd.exe on a French Windows: code page 850, translated labels."""
    french = tmp_path / "dns.txt"
    french.write_bytes(
        "C:\\Users\\Administrateur>nslookup mail.contoso.com 10.1.4.5\r\n"
        "Serveur :   dc2.contoso.local\r\nAddress:  10.1.4.5\r\n\r\n"
        "Réponse ne faisant pas autorité :\r\nNom :    mail.contoso.com\r\nAddress:  10.1.5.11\r\n\r\n"
        "C:\\Users\\Administrateur>nslookup legacy.contoso.com 10.1.4.5\r\n"
        "Serveur :   dc2.contoso.local\r\nAddress:  10.1.4.5\r\n\r\n"
        "*** dc2.contoso.local ne parvient pas à trouver legacy.contoso.com : Non-existent domain\r\n".encode("cp850")
    )
    assert "é".encode("cp850") in french.read_bytes()
    got = summary(resolutions(french, "mail.contoso.com", "legacy.contoso.com"))
    assert got == {
        ("mail.contoso.com", "10.1.4.5:53"): ("ok", ("10.1.5.11",), ()),
        ("legacy.contoso.com", "10.1.4.5:53"): ("nxdomain", (), ()),
    }


def test_windows_nslookup_when_the_server_answers_nothing_at_all(tmp_path: Path) -> None:
    """The server does not even answer the lookup of its own name: no header, no answer."""
    dead = tmp_path / "dns.txt"
    dead.write_text(
        "C:\\Users\\Administrator> nslookup mail.contoso.com\n"
        "DNS request timed out.\n    timeout was 2 seconds.\nDNS request timed out.\n"
        "    timeout was 2 seconds.\n*** Can't find server name for address 10.1.4.1: Timed out\n"
        "*** Default servers are not available\n\n"
        "C:\\Users\\Administrator>nslookup cas01.contoso.local\nDNS request timed out.\n"
        "    timeout was 2 seconds.\n*** Can't find server name for address 10.1.4.5: Timed out\n"
        "*** Default servers are not available\nServer:  UnKnown\nAddress:  10.1.4.5\n\n"
        "Name:    cas01.contoso.local\nAddress:  10.1.5.11\n\n",
        encoding="utf-8",
    )
    got = summary(resolutions(dead, "mail.contoso.com", "cas01.contoso.local"))
    assert got == {
        ("mail.contoso.com", "10.1.4.1:53"): ("timeout", (), ()),
        ("cas01.contoso.local", "10.1.4.5:53"): ("ok", ("10.1.5.11",), ()),
    }


def test_windows_nslookup_asking_ipv6_servers(tmp_path: Path) -> None:
    """A TMG host whose DNS servers have IPv6 addresses: the header's `Address:` line, the error naming a
    server that did not answer, and `server ADDR` in a session all carry IPv6 addresses; each server is
    named `[ADDR]:53`, as the live probe names it."""
    path = tmp_path / "dns.txt"
    path.write_bytes(
        "C:\\Users\\Administrator>nslookup mail.contoso.com fd00:10:1:4::1\r\n"
        "Server:  UnKnown\r\nAddress:  fd00:10:1:4::1\r\n\r\n"
        "Non-authoritative answer:\r\nName:    mail.contoso.com\r\n"
        "Addresses:  2001:db8::10\r\n\t  203.0.113.10\r\n\r\n"
        "C:\\Users\\Administrator>nslookup cas01.contoso.local\r\n"
        "DNS request timed out.\r\n    timeout was 2 seconds.\r\n"
        "*** Can't find server name for address fd00:10:1:4::5: Timed out\r\n"
        "*** Default servers are not available\r\n\r\n"
        "C:\\Users\\Administrator>nslookup legacy.contoso.com FD00:10:1:4:0:0:0:1\r\n"
        "Server:  UnKnown\r\nAddress:  fd00:10:1:4::1\r\n\r\n"
        "*** UnKnown can't find legacy.contoso.com: Non-existent domain\r\n\r\n"
        "C:\\Users\\Administrator>nslookup\r\n"
        "Default Server:  dc1.contoso.local\r\nAddress:  fd00:10:1:4::1\r\n\r\n"
        "> server fd00:10:1:4::9\r\nDefault Server:  UnKnown\r\nAddress:  fd00:10:1:4::9\r\n\r\n"
        "> cas01.contoso.local\r\nServer:  UnKnown\r\nAddress:  fd00:10:1:4::9\r\n\r\n"
        "DNS request timed out.\r\n    timeout was 2 seconds.\r\n"
        "DNS request timed out.\r\n    timeout was 2 seconds.\r\n"
        "*** Request to UnKnown timed-out\r\n> exit\r\n".encode("ascii")
    )
    got = summary(
        resolutions(
            path, "mail.contoso.com", "cas01.contoso.local", "legacy.contoso.com", extra=("--expect", "fd00:10:1:5::11")
        )
    )
    assert got == {
        ("mail.contoso.com", "[fd00:10:1:4::1]:53"): ("ok", ("203.0.113.10", "2001:db8::10"), ()),
        ("cas01.contoso.local", "[fd00:10:1:4::5]:53"): ("timeout", (), ()),
        ("legacy.contoso.com", "[fd00:10:1:4::1]:53"): ("nxdomain", (), ()),
        ("cas01.contoso.local", "[fd00:10:1:4::9]:53"): ("timeout", (), ()),
    }
    assert [s.label for s in read_recorded(path)] == [
        "[fd00:10:1:4::1]:53",
        "[fd00:10:1:4::5]:53",
        "[fd00:10:1:4::9]:53",
    ]


def test_dig_server_with_a_zone_index(tmp_path: Path) -> None:
    """dig names a link-local server with its zone (`fe80::53%2#53`); the zone is dropped, as the other
    readers do."""
    path = tmp_path / "dig.txt"
    path.write_text(
        "; <<>> DiG 9.18.49 <<>> @fe80::53%2 mail.contoso.com AAAA\n; (1 server found)\n"
        ";; global options: +cmd\n;; Got answer:\n"
        ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4242\n"
        ";; flags: qr aa rd; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1\n\n"
        ";; QUESTION SECTION:\n;mail.contoso.com.\t\tIN\tAAAA\n\n"
        ";; ANSWER SECTION:\nmail.contoso.com.\t60\tIN\tAAAA\t2001:db8::10\n\n"
        ";; Query time: 1 msec\n;; SERVER: fe80::53%2#53(fe80::53%2) (UDP)\n\n"
        "; <<>> DiG 9.18.49 <<>> @fe80::53%2 legacy.contoso.com AAAA\n; (1 server found)\n"
        ";; global options: +cmd\n;; connection timed out; no servers could be reached\n",
        encoding="utf-8",
    )
    (server,) = read_recorded(path)
    assert server.label == "[fe80::53]:53" and len(server.answers) == 2


def test_windows_nslookup_without_prompt_lines(tmp_path: Path) -> None:
    """Runs told apart by their headers; the error stream of each run may come before or after it."""
    bare = tmp_path / "bare.txt"
    bare.write_text(
        "*** dc1.contoso.local can't find legacy.contoso.com: Non-existent domain\n"
        "Server:  dc1.contoso.local\nAddress:  10.1.4.1\n\n"
        "Non-authoritative answer:\n"
        "Server:  dc2.contoso.local\nAddress:  10.1.4.5\n\n"
        "Name:    mail.contoso.com\nAddress:  10.1.5.11\n\n"
        "Server:  UnKnown\nAddress:  10.1.4.2\n\n"
        "*** UnKnown can't find autodiscover.contoso.com: Server failed\n"
        "Server:  dc1.contoso.local\nAddress:  10.1.4.1\n\n"
        "Name:    cas01.contoso.local\nAddress:  10.1.5.11\n",
        encoding="utf-8",
    )
    got = summary(
        resolutions(bare, "legacy.contoso.com", "mail.contoso.com", "autodiscover.contoso.com", "cas01.contoso.local")
    )
    assert got == {
        ("legacy.contoso.com", "10.1.4.1:53"): ("nxdomain", (), ()),
        ("mail.contoso.com", "10.1.4.5:53"): ("ok", ("10.1.5.11",), ()),
        ("autodiscover.contoso.com", "10.1.4.2:53"): ("servfail", (), ()),
        ("cas01.contoso.local", "10.1.4.1:53"): ("ok", ("10.1.5.11",), ()),
    }
    (dc1,) = [s for s in read_recorded(bare) if s.label == "10.1.4.1:53"]
    # one family only, no type option, error output maybe not saved: the other family is not recorded
    assert dc1.lookup(dns.name.from_text("cas01.contoso.local"), dns.rdatatype.AAAA) is None


# ------------------------------------------------------------------------- PowerShell Resolve-DnsName


def test_resolve_dnsname_every_outcome() -> None:
    facts = resolutions(
        DATA / "resolve-dnsname-transcript.txt",
        "mail.contoso.com",
        "webmail.contoso.com",
        "autodiscover-redirect.exchange.contoso.com",
        "legacy.contoso.com",
        "autodiscover.contoso.com",
        "cas01.contoso.local",
    )
    got = summary(facts)
    dc1 = "10.1.4.1:53"
    assert got[("mail.contoso.com", dc1)] == ("ok", ("203.0.113.10",), ())
    assert got[("webmail.contoso.com", dc1)] == ("ok", ("10.1.5.11", "fd00:10:1:5::11"), ("cas01.contoso.local",))
    # a name wider than the table's Name column, wrapped onto the next line
    assert got[("autodiscover-redirect.exchange.contoso.com", dc1)] == ("ok", ("10.1.5.11",), ("cas01.contoso.local",))
    assert got[("legacy.contoso.com", dc1)] == ("nxdomain", (), ())
    assert got[("autodiscover.contoso.com", "10.1.4.2:53")] == ("servfail", (), ())
    assert got[("mail.contoso.com", "10.1.4.3:53")] == ("refused", (), ())
    assert got[("mail.contoso.com", "10.1.4.9:53")] == ("timeout", (), ())
    assert got[("cas01.contoso.local", "recorded")] == ("ok", ("10.1.5.11", "fd00:10:1:5::11"), ())  # no -Server
    (dc1_server,) = [s for s in read_recorded(DATA / "resolve-dnsname-transcript.txt") if s.label == dc1]
    aaaa = dc1_server.lookup(dns.name.from_text("mail.contoso.com"), dns.rdatatype.AAAA)
    assert aaaa is not None and aaaa.rcode == dns.rcode.NOERROR and not aaaa.answer  # the SOA in Authority


def test_resolve_dnsname_in_a_start_transcript_file(tmp_path: Path) -> None:
    transcript = tmp_path / "PowerShell_transcript.TMG01.txt"
    transcript.write_bytes(
        codecs.BOM_UTF8
        + (
            b"**********************\r\nWindows PowerShell transcript start\r\nStart time: 20261127101500\r\n"
            b"Username: CONTOSO\\Administrator\r\nRunAs User: CONTOSO\\Administrator\r\n"
            b"Machine: TMG01 (Microsoft Windows NT 6.3.9600.0)\r\n**********************\r\n"
            b"Transcript started, output file is C:\\Users\\Administrator\\Documents\\dns.txt\r\n"
            b"PS C:\\Users\\Administrator> Resolve-DnsName -Name mail.contoso.com -Server 10.1.4.1 -Type A\r\n\r\n"
            b"Name                                           Type   TTL   Section    IPAddress\r\n"
            b"----                                           ----   ---   -------    ---------\r\n"
            b"mail.contoso.com                               A      3600  Answer     203.0.113.10\r\n\r\n\r\n"
            b"PS C:\\Users\\Administrator> Stop-Transcript\r\n**********************\r\n"
            b"Windows PowerShell transcript end\r\nEnd time: 20261127101600\r\n**********************\r\n"
        )
    )
    (recorded,) = read_recorded(transcript)
    mail = dns.name.from_text("mail.contoso.com")
    assert recorded.label == "10.1.4.1:53" and recorded.lookup(mail, dns.rdatatype.AAAA) is None  # -Type A
    assert [r.to_text() for r in recorded.lookup(mail, dns.rdatatype.A).answer] == [
        "mail.contoso.com. 0 IN A 203.0.113.10"
    ]


def test_resolve_dnsname_without_prompts_and_powershell_7_errors(tmp_path: Path) -> None:
    bare = tmp_path / "rdn.txt"
    bare.write_text(
        "\nName                              Type   TTL   Section    NameHost\n"
        "----                              ----   ---   -------    --------\n"
        "webmail.contoso.com               CNAME  3600  Answer     cas01.contoso.local\n\n"
        "Name       : cas01.contoso.local\nQueryType  : A\nTTL        : 1200\nSection    : Answer\n"
        "IP4Address : 10.1.5.11\n\n\n"
        "Name                                           Type   TTL   Section    IPAddress\n"
        "----                                           ----   ---   -------    ---------\n"
        "mail.contoso.com                               A      3600  Answer     203.0.113.10\n\n"
        "Resolve-DnsName: legacy.contoso.com : DNS name does not exist.\n",
        encoding="utf-8",
    )
    got = summary(resolutions(bare, "webmail.contoso.com", "mail.contoso.com", "legacy.contoso.com"))
    assert got == {
        ("webmail.contoso.com", "recorded"): ("ok", ("10.1.5.11",), ("cas01.contoso.local",)),
        ("mail.contoso.com", "recorded"): ("ok", ("203.0.113.10",), ()),
        ("legacy.contoso.com", "recorded"): ("nxdomain", (), ()),
    }


# ------------------------------------------------------------------------------------------ bad input

BAD = [
    (
        "windows-garbage.txt",
        "Server:  dc1.contoso.local\r\nAddress:  10.1.4.1\r\n\r\nName:    mail.contoso.com\r\n"
        "Address:  203.0.113.10\r\nplease find attached\r\n",
        "{}:6: cannot read this Windows nslookup line: 'please find attached'",
    ),
    (
        "windows-truncated.txt",
        "C:\\>nslookup mail.contoso.com\r\nServer:  dc1.contoso.local\r\nAddress:  10.1.4.1\r\n",
        "{}:2: this nslookup run has neither an answer nor an error: the file is cut short, or nslookup's error output "
        "was not saved (save it with `nslookup NAME SERVER > FILE 2>&1`)",
    ),
    (
        "windows-cut-address.txt",
        "Server:  dc1.contoso.local\r\nAddress:  10.1.4.1\r\n\r\nName:    mail.contoso.com\r\nAddress:  203.0.1",
        "{}:5: not an IP address: '203.0.1'",
    ),
    (
        "windows-reason.txt",
        "Server:  dc1\r\nAddress:  10.1.4.1\r\n\r\n*** dc1 can't find x.contoso.com: Bad luck\r\n",
        "{}:4: unknown nslookup error 'Bad luck'",
    ),
    (
        "windows-debug.txt",
        "C:\\>nslookup -debug mail.contoso.com\r\n------------\r\nGot answer:\r\n",
        "{}:2: cannot read this Windows nslookup line: '------------' (nslookup debug output is not supported: "
        "run it without -debug / set debug)",
    ),
    (
        "bind-garbage.txt",
        "Server:\t\t127.0.0.1\nAddress:\t127.0.0.1#53\n\nName:\tmail.contoso.com\nAddress: 127.0.0.200\nlorem ipsum\n",
        "{}:6: cannot read this BIND nslookup line: 'lorem ipsum'",
    ),
    (
        "bind-truncated.txt",
        "$ nslookup mail.contoso.com 127.0.0.1\nServer:\t\t127.0.0.1\nAddress:\t127.0.0.1#53\n",
        "{}:2: this nslookup run has a header but no answer (file cut short?)",
    ),
    (
        "rdn-truncated.txt",
        "PS C:\\> Resolve-DnsName mail.contoso.com\r\n\r\n"
        "Name                                           Type   TTL   Section    IPAddress\r\n",
        "{}:3: a Resolve-DnsName table header without its rows (file cut short?)",
    ),
    (
        "rdn-cut-row.txt",
        "Name                                           Type   TTL   Section    IPAddress\n"
        "----                                           ----   ---   -------    ---------\n"
        "mail.contoso.com                               A      36\n",
        "{}:3: a Resolve-DnsName table row with empty columns (cut short?): 'mail.contoso.com                               A      36'",
    ),
    (
        "rdn-error-id.txt",
        "Resolve-DnsName : mail.contoso.com : Something else\nAt line:1 char:1\n"
        "    + FullyQualifiedErrorId : WIN32_SOMETHING,Microsoft.DnsClient.Commands.ResolveDnsName\n",
        "{}:3: unknown Resolve-DnsName error 'WIN32_SOMETHING'",
    ),
]


@pytest.mark.parametrize("name,content,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_recordings_give_one_line_naming_file_and_line(
    tmp_path: Path, name: str, content: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content.encode())
    assert cli_error(path) == expected.format(path)


def test_binary_and_missing_files(tmp_path: Path) -> None:
    binary = tmp_path / "capture.pcap"
    binary.write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(16))
    assert cli_error(binary) == (
        f"{binary}@5: not a text file (NUL byte at offset 5; UTF-16 needs its byte-order mark)"
    )
    assert cli_error(tmp_path / "missing.txt") == f"{tmp_path / 'missing.txt'}: recorded DNS answers not found"


# ------------------------------------------------------------------------------- the whole diagnosis


def test_run_ranks_name_resolution_mismatch_first_from_nslookup_on_tmg(tmp_path: Path) -> None:
    """The dns-mismatch case with TMG's own evidence: `nslookup NAME > dns.txt` in PowerShell on TMG."""
    recorded = tmp_path / "dns.txt"
    runs = (
        "Server:  dc1.contoso.local\r\nAddress:  10.1.4.1\r\n\r\nName:    mail.contoso.com\r\n"
        "Address:  203.0.113.10\r\n\r\n"
        "Server:  dc1.contoso.local\r\nAddress:  10.1.4.1\r\n\r\nName:    cas01.contoso.local\r\n"
        "Address:  10.1.5.11\r\n\r\n"
    )
    recorded.write_bytes(codecs.BOM_UTF16_LE + runs.encode("utf-16-le"))
    answers = tmp_path / "answers.yaml"
    answers.write_text('users-report-failures: "yes"\n', encoding="utf-8")
    proc = run_cli(
        "run",
        "--profile",
        str(EXAMPLE / "profile.yaml"),
        "--hosts-file",
        str(EXAMPLE / "hosts"),
        "--evidence",
        str(EXAMPLE / "evidence.json"),
        "--dns-recorded",
        str(recorded),
        "--answers",
        str(answers),
        "--offline",
        "--no-input",
        "--format",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "misconfiguration"
    assert report["causes"][0]["id"] == "name-resolution-mismatch"
    effective = [
        f
        for f in report["facts"]
        if f["kind"] == "dns.resolution" and f["attrs"]["effective"] and f["subject"] == "mail.contoso.com"
    ]
    assert [(f["attrs"]["server"], f["attrs"]["addresses"], f["provenance"]["source"]) for f in effective] == [
        ("10.1.4.1:53", ["203.0.113.10"], str(recorded))
    ]


@pytest.mark.parametrize(
    ("cas_addresses", "all_internal"),
    [
        ("fd00:10:1:5::11\r\n\t  10.1.5.11", True),  # A and AAAA, as Windows asks for both
        ("fd00:10:1:5::11", False),  # AAAA only: nothing TMG can reach over IPv4
    ],
)
def test_consistency_counts_the_families_of_the_internal_addresses(
    tmp_path: Path, cas_addresses: str, all_internal: bool
) -> None:
    """An IPv4 profile: the AAAA addresses Windows nslookup also prints are shown, but only IPv4 decides
    whether a name resolves to the internal server."""
    recorded = tmp_path / "dns.txt"
    label = "Addresses" if "\n" in cas_addresses else "Address"
    recorded.write_text(
        "Server:  dc1.contoso.local\r\nAddress:  10.1.4.1\r\n\r\n"
        f"Name:    cas01.contoso.local\r\n{label}:  {cas_addresses}\r\n\r\n",
        encoding="utf-8",
    )
    proc = run_cli(
        "probe",
        "dns",
        "cas01.contoso.local",
        "--dns-recorded",
        str(recorded),
        "--offline",
        "--no-hosts",
        "--expect",
        "10.1.5.11",
        "--format",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)["facts"]
    (resolution,) = [f for f in facts if f["kind"] == "dns.resolution"]
    assert "fd00:10:1:5::11" in resolution["attrs"]["addresses"]
    (consistency,) = [f for f in facts if f["kind"] == "dns.consistency"]
    assert consistency["attrs"]["all_internal"] is all_internal
    assert consistency["attrs"]["mismatched"] == ([] if all_internal else ["cas01.contoso.local"])
