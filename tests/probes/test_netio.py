"""What the network probes share (diagnose/probes/netio.py): how servers and targets are written and
parsed, IPv4 and IPv6 alike, and the loopback guard the tests run under."""

from __future__ import annotations

import pytest

from diagnose.errors import UsageError
from diagnose.probes import ProbeContext, run_probe
from diagnose.probes.netio import Endpoint, authority, canonical_address, parse_endpoint, reachable
from tests.conftest import run_cli
from tests.servers import LOOPBACK, LOOPBACK6, SilentPeer, requires_ipv6


@pytest.mark.parametrize(
    ("text", "host", "port", "written"),
    [
        ("10.1.5.11", "10.1.5.11", 443, "10.1.5.11:443"),
        ("10.1.5.11:8443", "10.1.5.11", 8443, "10.1.5.11:8443"),
        ("CAS01.Contoso.Local.", "cas01.contoso.local", 443, "cas01.contoso.local:443"),
        ("cas01:80", "cas01", 80, "cas01:80"),
        ("::1", "::1", 443, "[::1]:443"),  # a bare IPv6 address has no port
        ("[::1]", "::1", 443, "[::1]:443"),
        ("[::1]:5353", "::1", 5353, "[::1]:5353"),
        ("::1:53", "::1:53", 443, "[::1:53]:443"),  # an address itself (0:0:0:0:0:0:1:53), not ::1 port 53
        ("[0:0:0:0:0:0:0:1]:53", "::1", 53, "[::1]:53"),  # canonical, RFC 5952
        ("FD00:10:1:5:0:0:0:11", "fd00:10:1:5::11", 443, "[fd00:10:1:5::11]:443"),
        ("[::FFFF:7F00:1]:53", "::ffff:127.0.0.1", 53, "[::ffff:127.0.0.1]:53"),  # IPv4-mapped: dotted
        ("[fe80::1%eth0]:443", "fe80::1%eth0", 443, "[fe80::1%eth0]:443"),  # the zone is kept
    ],
)
def test_endpoints_are_parsed_and_written_one_way(text: str, host: str, port: int, written: str) -> None:
    endpoint = parse_endpoint(text, 443)
    assert (endpoint.host, endpoint.port, str(endpoint)) == (host, port, written)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("::1:53535", "'::1:53535' is not an IPv6 address; with a port, write [::1]:53535"),
        ("fd00::5:11:99999", "'fd00::5:11:99999' is not an IPv6 address; with a port, write [fd00::5:11]:99999"),
        ("[::1", "'[::1': missing ']' after an IPv6 address"),
        ("[::1]53", "'[::1]53': expected ':PORT' after ']'"),
        ("[10.1.5.11]:443", "'[10.1.5.11]:443': only an IPv6 address goes in brackets"),
        ("[cas01]:443", "'[cas01]:443': only an IPv6 address goes in brackets"),
        ("[]:443", "'[]:443': no host"),
        ("[::1]:0", "'[::1]:0': port must be a number from 1 to 65535"),
        ("a:b:c", "'a:b:c' is not an IPv6 address"),
    ],
)
def test_malformed_endpoints_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_endpoint(text, 443)
    assert str(err.value) == message


def test_authority_brackets_ipv6_and_drops_the_default_port() -> None:
    assert authority("::1", 443, 443) == "[::1]"
    assert authority("::1", 8443, 443) == "[::1]:8443"
    assert authority("cas01.contoso.local", 443, 443) == "cas01.contoso.local"
    assert authority("10.1.5.11", 80, 443) == "10.1.5.11:80"
    assert str(Endpoint("fd00::11", 53)) == "[fd00::11]:53"
    assert canonical_address("0000:0000::0001") == "::1"
    assert canonical_address("::ffff:a01:50b") == "::ffff:10.1.5.11"  # as Python 3.13 and dnspython write it
    assert canonical_address("FE80::1%eth0") == "fe80::1%eth0"


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.5.6.7", True),
        ("::1", True),
        ("0:0:0:0:0:0:0:1", True),
        ("localhost", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:127.9.9.9", True),
        ("::FFFF:7F00:1", True),
        ("::ffff:10.1.5.11", False),
        ("::127.0.0.1", False),  # IPv4-compatible (deprecated): not loopback
        ("::", False),
        ("0.0.0.0", False),
        ("::2", False),
        ("fe80::1%lo", False),
        ("fd00::5:11", False),
        ("2001:db8::1", False),
        ("10.1.5.11", False),
        ("cas01.contoso.local", False),
        ("64:ff9b::7f00:1", False),
    ],
)
def test_loopback_guard(host: str, allowed: bool) -> None:
    """Tests run with DIAGNOSE_NETWORK=loopback (tests/conftest.py): only this host's loopback is reached."""
    assert reachable(host) is allowed


def test_loopback_guard_lets_an_ipv4_mapped_target_reach_ipv4_loopback() -> None:
    """An IPv6 socket sends ::ffff:127.0.0.1 to 127.0.0.1: the guard allows it, and the connection is made."""
    with SilentPeer() as listening:
        mapped = f"[::ffff:{LOOPBACK}]:{listening.port}"
        result, run = run_probe(
            "tcp", ProbeContext(), {"targets": [mapped, f"[::ffff:10.1.5.11]:{listening.port}"], "timeout": 1}
        )
    assert run.status.value == "partial"
    assert run.reason == f"not probed (DIAGNOSE_NETWORK=loopback): [::ffff:10.1.5.11]:{listening.port}"
    (fact,) = result.facts
    assert (fact.subject, fact.attrs["outcome"]) == (mapped, "open")


@requires_ipv6
def test_loopback_guard_holds_back_every_other_ipv6_address() -> None:
    with SilentPeer(host=LOOPBACK6) as listening:
        targets = [
            listening.address,
            f"[fe80::1%lo]:{listening.port}",
            f"[::]:{listening.port}",
            f"[2001:db8::1]:{listening.port}",
        ]
        result, run = run_probe("tcp", ProbeContext(), {"targets": targets, "timeout": 1})
    assert [(f.subject, f.attrs["outcome"]) for f in result.facts] == [(listening.address, "open")]
    assert run.reason == (
        "not probed (DIAGNOSE_NETWORK=loopback): "
        f"[fe80::1%lo]:{listening.port}, [::]:{listening.port}, [2001:db8::1]:{listening.port}"
    )


def test_cli_names_the_bracket_form_for_an_ipv6_address_with_a_port() -> None:
    proc = run_cli("probe", "tcp", "::1:44300")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "diagnose: error: '::1:44300' is not an IPv6 address; with a port, write [::1]:44300"
