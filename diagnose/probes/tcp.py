"""The `tcp` probe: can the TMG host open a TCP connection to the internal server?

A listener that is down answers the SYN with a reset (TMG logs 10061, Zeek REJ); a host that is down
or filtered does not answer at all (10060, Zeek S0); a missing route fails at once (10065)
(causes.md C13). The probe connects to each target side by side, each with its own timeout.

Parameters (`spec`):
    targets        HOST[:PORT] list (default: internal_name)
    internal_name  the rule's To name, connected to when no target is given
    port           default port (443)
    timeout        seconds per connect (default 3)

Facts: `tcp.reachability`, one per target (subject "host:port").
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from diagnose.facts import Fact, ProbeStatus, make_fact
from diagnose.probes import ProbeContext, ProbeResult
from diagnose.probes.netio import (
    ConnectFailure,
    Endpoint,
    connect,
    elapsed_ms,
    parse_endpoint,
    run_concurrently,
    split_reachable,
)
from diagnose.probes.params import ProbeParams, port_field

PROBE = "tcp"
DEFAULT_TIMEOUT = 3.0


@dataclass(frozen=True)
class TcpParams(ProbeParams):
    """Parameters of the `tcp` probe (see the module docstring)."""

    probe = PROBE
    targets: tuple[str, ...] = ()
    internal_name: str | None = None
    port: int = port_field(443)
    timeout: float = DEFAULT_TIMEOUT


def probe(ctx: ProbeContext, spec: TcpParams | Mapping[str, Any]) -> ProbeResult:
    params = TcpParams.of(spec)
    raw = list(params.targets)
    if not raw and params.internal_name:
        raw = [params.internal_name]
    if not raw:
        return ProbeResult.unavailable("no target to connect to (give targets, internal_addresses or internal_name)")
    targets, held = split_reachable(list(dict.fromkeys(parse_endpoint(t, params.port) for t in raw)))
    if not targets:
        return ProbeResult.unavailable(held)
    timeout = params.timeout

    def work(endpoint: Endpoint, budget: float) -> Fact:
        ctx.progress(ctx.check or PROBE, f"connecting to {endpoint}")
        started = time.monotonic()
        try:
            sock = connect(endpoint, budget)
        except ConnectFailure as exc:
            return _fact(endpoint, ctx.check, exc.outcome, exc.detail, elapsed_ms(started))
        sock.close()
        return _fact(endpoint, ctx.check, "open", f"{endpoint} accepted the connection", elapsed_ms(started))

    def expired(endpoint: Endpoint) -> Fact:
        return _fact(endpoint, ctx.check, "timeout", "not tried: the probe's deadline had passed", None)

    facts = tuple(run_concurrently(ctx, targets, work, expired, timeout))
    return ProbeResult(facts, ProbeStatus.PARTIAL if held else ProbeStatus.COMPLETE, held)


def _fact(endpoint: Endpoint, check: str | None, outcome: str, detail: str, elapsed: float | None) -> Fact:
    return make_fact(
        "tcp.reachability",
        str(endpoint),
        PROBE,
        check=check,
        source=str(endpoint),
        host=endpoint.host,
        port=endpoint.port,
        outcome=outcome,
        detail=detail,
        elapsed_ms=elapsed,
    )
