"""The dns probe offline: answers recorded with the real `dig` from a loopback server, replayed from a file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from diagnose.errors import InputError
from diagnose.kinds import fact_kinds
from diagnose.probes import ProbeContext, run_probe
from diagnose.probes.dns.recorded import read_recorded
from tests.servers import DnsServer, requires_ipv6

INTERNAL, PUBLIC = "127.0.0.10", "127.0.0.200"
ZONE = {
    "mail.contoso.com": {"A": [PUBLIC]},
    "webmail.contoso.com": {"CNAME": "cas01.contoso.local"},
    "cas01.contoso.local": {"A": [INTERNAL]},
}
needs_dig = pytest.mark.skipif(shutil.which("dig") is None, reason="dig (bind9-dnsutils) is not installed")


def dig(server: DnsServer | int, name: str, rdtype: str, at: str = "127.0.0.1") -> str:
    port = server if isinstance(server, int) else server.port
    return subprocess.run(
        ["dig", "+tries=1", "+time=1", "-p", str(port), f"@{at}", name, rdtype],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    if shutil.which("dig") is None:
        pytest.skip("dig (bind9-dnsutils) is not installed")
    out = []
    with DnsServer(ZONE, rcodes={"autodiscover.contoso.com": "SERVFAIL"}) as server:
        for name in ("mail.contoso.com", "webmail.contoso.com", "autodiscover.contoso.com", "legacy.contoso.com"):
            out += [dig(server, name, "A"), dig(server, name, "AAAA")]
        address = server.address
    with DnsServer({}, silent=["*"]) as silent:
        out.append(dig(silent, "cas01.contoso.local", "A"))
    path = tmp_path_factory.mktemp("dns") / "dig.txt"
    path.write_text("".join(out), encoding="utf-8")
    return path, address


@needs_dig
def test_recorded_answers_replay_as_the_server_gave_them(recorded: tuple[Path, str], tmp_path: Path) -> None:
    path, address = recorded
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{INTERNAL} cas01.contoso.local\n", encoding="utf-8")
    spec = {
        "names": ["mail.contoso.com", "autodiscover.contoso.com", "legacy.contoso.com"],
        "certificate_fqdn": "webmail.contoso.com",
        "internal_name": "cas01.contoso.local",
        "recorded": [str(path)],
        "offline": True,
        "hosts_file": str(hosts),
        "expect": [INTERNAL],
        "servers": ["127.0.0.1:9"],
    }  # offline: never asked
    result, _ = run_probe("dns", ProbeContext(), spec)
    fact_kinds().check(result.facts, "dns probe")
    dns_facts = {f.subject: f for f in result.facts if f.kind == "dns.resolution" and f.attrs["source"] == "dns"}
    # one fact per name: each recorded server answers only the questions it was asked
    assert len([f for f in result.facts if f.kind == "dns.resolution" and f.attrs["source"] == "dns"]) == 5
    mail = dns_facts["mail.contoso.com"]
    assert mail.attrs["server"] == address
    assert (mail.attrs["outcome"], mail.attrs["addresses"], mail.attrs["matches_internal"]) == ("ok", (PUBLIC,), False)
    assert mail.provenance.source == str(path) and mail.provenance.location.startswith("line ")
    assert dns_facts["webmail.contoso.com"].attrs["cname_chain"] == ("cas01.contoso.local",)
    assert dns_facts["webmail.contoso.com"].attrs["addresses"] == (INTERNAL,)
    assert dns_facts["autodiscover.contoso.com"].attrs["outcome"] == "servfail"
    assert dns_facts["legacy.contoso.com"].attrs["outcome"] == "nxdomain"
    assert dns_facts["cas01.contoso.local"].attrs["outcome"] == "timeout"  # recorded from a silent server
    assert dns_facts["cas01.contoso.local"].attrs["effective"] is False  # the HOSTS entry is used
    (summary,) = [f for f in result.facts if f.kind == "dns.consistency"]
    assert summary.attrs["mismatched"] == ("mail.contoso.com", "autodiscover.contoso.com", "legacy.contoso.com")
    assert "offline" in result.reason


@needs_dig
def test_recorded_file_lists_its_servers(recorded: tuple[Path, str]) -> None:
    path, address = recorded
    servers = read_recorded(path)
    assert [s.label for s in servers] == [address, "127.0.0.1:" + servers[1].label.split(":")[1]]
    assert len(servers[0].answers) == 8


def test_unreadable_recorded_files_name_file_and_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_recorded(empty)
    assert str(err.value).startswith(f"{empty}:1: no recorded DNS answers found")
    other = tmp_path / "other.txt"
    other.write_text("\nnothing here\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_recorded(other)
    assert str(err.value) == (
        f"{other}:2: not dig, nslookup (Windows or BIND) or Resolve-DnsName output: 'nothing here'"
    )
    bad = tmp_path / "bad.txt"
    bad.write_text(
        "; <<>> DiG 9.18 <<>> mail.contoso.com\n;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n"
        ";; QUESTION SECTION:\n;mail.contoso.com.\t\tIN\tA\n\n;; ANSWER SECTION:\n"
        "mail.contoso.com.\t60\tIN\tA\tnot-an-address\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError) as err:
        read_recorded(bad)
    assert str(err.value).startswith(f"{bad}:7: cannot read the record")
    with pytest.raises(InputError) as err:
        read_recorded(tmp_path / "missing.txt")
    assert str(err.value) == f"{tmp_path / 'missing.txt'}: recorded DNS answers not found"


DATA = Path(__file__).resolve().parents[1] / "data" / "dns-mismatch"


def test_shipped_recorded_case_offline() -> None:
    """The files an offline example can ship: TMG's HOSTS file (Windows format) and recorded `dig` output."""
    spec = {
        "names": ["mail.contoso.com"],
        "certificate_fqdn": "mail.contoso.com",
        "internal_name": "cas01.contoso.local",
        "expect": ["10.1.5.11"],
        "offline": True,
        "hosts_file": str(DATA / "hosts"),
        "recorded": [str(DATA / "dig.txt")],
    }
    result, _ = run_probe("dns", ProbeContext(), spec)
    fact_kinds().check(result.facts, "dns probe")
    effective = {f.subject: f.attrs for f in result.facts if f.kind == "dns.resolution" and f.attrs["effective"]}
    assert effective["mail.contoso.com"]["addresses"] == ("203.0.113.10",)
    assert effective["mail.contoso.com"]["matches_internal"] is False
    assert effective["mail.contoso.com"]["roles"] == ("published", "certificate")
    assert effective["cas01.contoso.local"]["matches_internal"] is True
    hosts_facts = [f for f in result.facts if f.kind == "dns.resolution" and f.attrs["source"] == "hosts"]
    assert {f.attrs["outcome"] for f in hosts_facts} == {"not-listed"}
    (summary,) = [f for f in result.facts if f.kind == "dns.consistency"]
    assert summary.attrs["mismatched"] == ("mail.contoso.com",) and summary.attrs["all_internal"] is False


@requires_ipv6
@pytest.mark.parametrize("tool", ["dig", "nslookup"])
def test_recorded_and_live_answers_name_an_ipv6_server_alike(tool: str, tmp_path: Path) -> None:
    """dig and BIND nslookup, run here against a server on ::1, print it `::1#PORT`; read back, the server is
    `[::1]:PORT`, exactly as the live probe names it: one server, two sources that agree."""
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} (bind9-dnsutils) is not installed")
    zone = {"mail.contoso.com": {"A": [PUBLIC], "AAAA": ["2001:db8::10"]}, "cas01.contoso.local": {"AAAA": ["::1"]}}
    out = []
    with DnsServer(zone, host="::1", rcodes={"autodiscover.contoso.com": "SERVFAIL"}) as server:
        for name in ("mail.contoso.com", "cas01.contoso.local", "legacy.contoso.com", "autodiscover.contoso.com"):
            if tool == "dig":
                out += [dig(server, name, "A", "::1"), dig(server, name, "AAAA", "::1")]
            else:
                proc = subprocess.run(
                    ["nslookup", f"-port={server.port}", name, "::1"], capture_output=True, text=True, timeout=20
                )
                out.append(f"$ nslookup -port={server.port} {name} ::1\n{proc.stdout}{proc.stderr}")
        path = tmp_path / f"{tool}.txt"
        path.write_text("".join(out), encoding="utf-8")
        assert f"::1#{server.port}" in path.read_text(encoding="utf-8")
        (recorded,) = read_recorded(path)
        assert recorded.label == server.address == f"[::1]:{server.port}"
        spec = {
            "names": ["mail.contoso.com", "legacy.contoso.com", "autodiscover.contoso.com"],
            "internal_name": "cas01.contoso.local",
            "expect": ["::1"],
            "servers": [server.address],
            "recorded": [str(path)],
            "use_hosts": False,
            "timeout": 1,
        }
        result, _ = run_probe("dns", ProbeContext(), spec)
    fact_kinds().check(result.facts, "dns probe")
    by_origin: dict[str, dict[str, tuple]] = {}
    for fact in result.facts:
        if fact.kind == "dns.resolution":
            assert fact.attrs["server"] == server.address
            by_origin.setdefault(fact.provenance.source, {})[fact.subject] = (
                fact.attrs["outcome"],
                fact.attrs["addresses"],
                fact.attrs.get("matches_internal"),
            )
    live, replayed = by_origin[f"dns {server.address}"], by_origin[str(path)]
    assert live == replayed
    assert live["mail.contoso.com"] == ("ok", (PUBLIC, "2001:db8::10"), False)
    assert live["cas01.contoso.local"] == ("ok", ("::1",), True)
    assert live["legacy.contoso.com"][0] == "nxdomain" and live["autodiscover.contoso.com"][0] == "servfail"


def test_an_endless_line_or_name_is_one_quick_error(tmp_path: Path) -> None:
    """A recording with a line of megabytes (a damaged paste) or a 'name' of thousands of characters is
    refused by length, naming the line, before the name parser sees it (it took a minute and 200 MB)."""
    sample = (Path(__file__).resolve().parents[2] / "data" / "dns" / "windows-nslookup-zh-cn.txt").read_bytes()
    first = sample.decode("utf-16").splitlines()[0]
    endless = tmp_path / "endless.txt"
    endless.write_bytes(sample[:2] + "0".encode("utf-16-le") * (2 << 20) + sample[2:])
    with pytest.raises(InputError) as err:
        read_recorded(endless)
    assert str(err.value) == f"{endless}:1: line of {(2 << 20) + len(first)} characters: not the output of a DNS tool"
    long_name = tmp_path / "long-name.txt"
    long_name.write_text(
        "C:\\>nslookup " + "a" * 5000 + " 10.1.4.1\nServer:  dc1.contoso.local\n"
        "Address:  10.1.4.1\n\nName:    " + "a" * 5000 + "\nAddress:  10.1.4.20\n\n",
        encoding="ascii",
    )
    with pytest.raises(InputError) as err:
        read_recorded(long_name)
    assert "not a DNS name: 5000 characters (a DNS name has at most 255 octets)" in str(err.value)
    assert str(err.value).startswith(f"{long_name}:")
