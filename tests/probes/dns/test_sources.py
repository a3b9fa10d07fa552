"""The three name sources of the dns probe answer through one interface (`NameSource`): a HOSTS file
written here, a live DNS server on loopback, and the same server's answers recorded with the real `dig`
and replayed. Asked the same questions, they give the same answers."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.rdatatype
import pytest

from diagnose.probes import ProbeContext, run_probe
from diagnose.probes.dns.hosts import read_hosts
from diagnose.probes.dns.recorded import read_recorded
from diagnose.probes.dns.sources import Answer, HostsSource, LiveServer, NameSource, RecordedSource
from diagnose.probes.netio import parse_endpoint
from tests.servers import LOOPBACK, DnsServer

INTERNAL = "127.0.0.10"
ZONE = {
    "cas01.contoso.local": {"A": [INTERNAL]},
    "webmail.contoso.com": {"CNAME": "cas01.contoso.local"},
}
A, AAAA = dns.rdatatype.A, dns.rdatatype.AAAA


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServer]:
    with DnsServer(ZONE, host=LOOPBACK) as running:
        yield running


def _recorded(server: DnsServer, path: Path, questions: list[tuple[str, str]]) -> RecordedSource:
    """The server's answers as `dig` prints them, in one transcript, read back."""
    if shutil.which("dig") is None:
        pytest.skip("dig (bind9-dnsutils) is not installed")
    out = []
    for name, rdtype in questions:
        done = subprocess.run(
            ["dig", "-p", str(server.port), f"@{LOOPBACK}", name, rdtype],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        out.append(done.stdout)
    path.write_text("\n".join(out))
    (recorded,) = read_recorded(str(path))
    return RecordedSource(recorded)


def _ask(source: NameSource, name: str) -> Answer:
    """A's and AAAA's answers as the probe would merge them: the addresses, and the last outcome."""
    a, aaaa = source.ask(name, A, 2.0), source.ask(name, AAAA, 2.0)
    return a if a.outcome == "ok" else aaaa


def test_hosts_live_and_recorded_answer_alike(server: DnsServer, tmp_path: Path) -> None:
    hosts_path = tmp_path / "hosts"
    hosts_path.write_text(f"# TMG's HOSTS file\n{INTERNAL}\tcas01.contoso.local\n")
    questions = [
        (n, t) for n in ("cas01.contoso.local", "webmail.contoso.com", "nope.contoso.com") for t in ("A", "AAAA")
    ]
    sources: list[NameSource] = [
        HostsSource(read_hosts(str(hosts_path))),
        LiveServer(parse_endpoint(server.address, 53)),
        _recorded(server, tmp_path / "dig.txt", questions),
    ]
    assert [(s.kind, s.waits) for s in sources] == [("hosts", False), ("dns", True), ("dns", False)]
    assert sources[0].origin == str(hosts_path) and sources[2].origin == str(tmp_path / "dig.txt")
    assert sources[1].label == sources[2].label == server.address
    assert sources[1].origin == f"dns {server.address}"

    cas = [_ask(s, "cas01.contoso.local") for s in sources]
    assert [(a.outcome, a.addresses) for a in cas] == [("ok", (INTERNAL,))] * 3
    assert cas[0].lines == (2,) and cas[1].lines == () and len(cas[2].lines) == 1  # the file lines read

    alias = [_ask(s, "webmail.contoso.com") for s in sources[1:]]  # through the CNAME, live and recorded
    assert [(a.outcome, a.addresses, a.cname_chain) for a in alias] == [
        ("ok", (INTERNAL,), ("cas01.contoso.local",))
    ] * 2
    assert _ask(sources[0], "webmail.contoso.com").outcome == "not-listed"

    missing = [s.ask("nope.contoso.com", A, 2.0).outcome for s in sources]
    assert missing == ["not-listed", "nxdomain", "nxdomain"]
    never_recorded = sources[2].ask("other.contoso.com", A, 2.0)
    assert never_recorded.outcome == "not-recorded"


def test_past_the_deadline_files_still_answer_and_servers_are_not_asked(server: DnsServer, tmp_path: Path) -> None:
    """The probe asks its sources in one loop: a file (HOSTS, a recorded transcript) answers at once
    whatever is left of the deadline; a live server past it is reported as not asked."""
    hosts_path = tmp_path / "hosts"
    hosts_path.write_text(f"{INTERNAL} cas01.contoso.local\n")
    recorded = _recorded(server, tmp_path / "dig.txt", [("webmail.contoso.com", "A"), ("webmail.contoso.com", "AAAA")])
    ctx = ProbeContext(deadline=time.monotonic() - 1)
    spec = {
        "names": ["webmail.contoso.com"],
        "internal_name": "cas01.contoso.local",
        "hosts_file": str(hosts_path),
        "servers": [server.address],
        "recorded": [recorded.origin],
        "expect": [INTERNAL],
        "timeout": 1.0,
    }
    result, _run = run_probe("dns", ctx, spec, ("dns.resolution", "dns.consistency"))
    got = {
        (f.subject, f.provenance.source): (f.attrs["outcome"], f.attrs["addresses"], f.attrs.get("detail"))
        for f in result.facts
        if f.kind == "dns.resolution"
    }
    not_asked = ("timeout", (), "not asked: the probe's deadline had passed")
    live = f"dns {server.address}"
    assert got == {
        ("cas01.contoso.local", str(hosts_path)): ("ok", (INTERNAL,), None),
        ("cas01.contoso.local", live): not_asked,
        ("webmail.contoso.com", str(hosts_path)): ("not-listed", (), f"webmail.contoso.com is not in {hosts_path}"),
        ("webmail.contoso.com", live): not_asked,
        ("webmail.contoso.com", recorded.origin): ("ok", (INTERNAL,), None),
    }
