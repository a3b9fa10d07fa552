"""The tcp probe, and the concurrency every network probe shares: operations overlap, each with its timeout."""

from __future__ import annotations

import json
import threading
import time

import pytest

from diagnose.collect import plan_check
from diagnose.compat import zip_strict
from diagnose.kinds import fact_kinds
from diagnose.probes import ProbeContext, run_probe
from diagnose.profile import SiteProfile
from tests.conftest import run_cli
from tests.servers import (
    LOOPBACK6,
    LOOPBACKS,
    SilentPeer,
    UnansweredPort,
    closed_port,
    host_port,
    requires_ipv6,
)


@pytest.mark.parametrize("host", LOOPBACKS)
def test_open_refused_and_timeout(host: str) -> None:
    with SilentPeer(host) as listening, UnansweredPort(host) as unanswered:
        refused = host_port(host, closed_port(host))
        result, _ = run_probe(
            "tcp", ProbeContext(), {"targets": [listening.address, refused, unanswered.address], "timeout": 0.5}
        )
    fact_kinds().check(result.facts, "tcp probe")
    outcomes = [(f.subject, f.attrs["outcome"]) for f in result.facts]
    assert outcomes == [(listening.address, "open"), (refused, "refused"), (unanswered.address, "timeout")]
    assert result.facts[2].attrs["elapsed_ms"] >= 450
    assert [(f.attrs["host"], f.attrs["port"]) for f in result.facts] == [
        (host, listening.port),
        (host, int(refused.rsplit(":", 1)[1])),
        (host, unanswered.port),
    ]


@requires_ipv6
def test_ipv6_targets_from_the_profile_and_the_cli() -> None:
    """`internal_addresses: ["::1"]` with a port, and `[::1]:PORT` / `::1` on the command line."""
    with SilentPeer(LOOPBACK6) as listening:
        profile = SiteProfile(internal_addresses=(LOOPBACK6,))
        result, _ = run_probe("tcp", ProbeContext(), plan_check("tcp", {"port": listening.port}, profile)[1])
        assert [(f.subject, f.attrs["outcome"]) for f in result.facts] == [(f"[::1]:{listening.port}", "open")]
        refused = closed_port(LOOPBACK6)
        proc = run_cli("probe", "tcp", listening.address, "0:0::1", "--port", str(refused), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)["facts"]
    assert [(f["subject"], f["attrs"]["outcome"]) for f in facts] == [
        (listening.address, "open"),
        (f"[::1]:{refused}", "refused"),
    ]


def test_twenty_targets_with_ten_timeouts_overlap() -> None:
    """Every connect starts before the first timeout ends: the probe waits one timeout, not ten."""
    timeout = 1.0
    starts: list[float] = []
    lock = threading.Lock()

    def progress(check: str, message: str) -> None:
        with lock:
            starts.append(time.monotonic())

    unanswered = [UnansweredPort() for _ in range(10)]
    answering = [SilentPeer() for _ in range(10)]
    try:
        targets = [p.address for pair in zip_strict(unanswered, answering) for p in pair]
        began = time.monotonic()
        result, _ = run_probe("tcp", ProbeContext(progress=progress), {"targets": targets, "timeout": timeout})
        ended = time.monotonic()
    finally:
        for server in unanswered + answering:
            server.close()
    outcomes = [f.attrs["outcome"] for f in result.facts]
    assert outcomes == ["timeout", "open"] * 10
    assert len(starts) == 20
    first_timeout_end = min(
        began + f.attrs["elapsed_ms"] / 1000 for f in result.facts if f.attrs["outcome"] == "timeout"
    )
    assert max(starts) < first_timeout_end  # all twenty were under way before the first timed out
    assert ended - began < 10 * timeout  # and not one after the other


def test_deadline_caps_every_operation() -> None:
    with UnansweredPort() as unanswered:
        ctx = ProbeContext(deadline=time.monotonic() + 0.3)
        result, _ = run_probe("tcp", ctx, {"targets": [unanswered.address], "timeout": 5})
    (fact,) = result.facts
    assert fact.attrs["outcome"] == "timeout" and fact.attrs["elapsed_ms"] < 1000


def test_nothing_to_connect_to_is_unavailable() -> None:
    _result, run = run_probe("tcp", ProbeContext(), {"targets": []})
    assert run.status.value == "unavailable" and "no target" in run.reason


def test_cli_tcp() -> None:
    with SilentPeer() as listening:
        proc = run_cli("probe", "tcp", listening.address, f"127.0.0.1:{closed_port()}", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert [f["attrs"]["outcome"] for f in json.loads(proc.stdout)["facts"]] == ["open", "refused"]
    proc = run_cli("probe", "tcp", "127.0.0.1:99999")
    assert proc.returncode == 2 and proc.stderr.startswith("diagnose: error: '127.0.0.1:99999': port must be")


def test_loopback_guard_holds_back_other_addresses() -> None:
    """Tests run with DIAGNOSE_NETWORK=loopback (tests/conftest.py): nothing leaves this host."""
    with SilentPeer() as listening:
        result, run = run_probe("tcp", ProbeContext(), {"targets": ["10.1.5.11:443", listening.address]})
    assert [f.subject for f in result.facts] == [listening.address]
    assert run.status.value == "partial" and run.reason == "not probed (DIAGNOSE_NETWORK=loopback): 10.1.5.11:443"
    for probe, spec in (
        ("tcp", {"targets": ["cas01.contoso.local"]}),
        ("tls", {"targets": ["192.0.2.7"]}),
        ("http", {"urls": ["https://203.0.113.10/owa/"]}),
        ("dns", {"names": ["mail.contoso.com"], "servers": ["192.0.2.53"], "use_hosts": False}),
        ("dns", {"names": ["mail.contoso.com"], "use_hosts": False}),
    ):
        result, run = run_probe(probe, ProbeContext(), spec)
        assert run.status.value == "unavailable" and "DIAGNOSE_NETWORK=loopback" in run.reason, (probe, run)
