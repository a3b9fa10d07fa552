"""The `tcp` probe: can the TMG host open a TCP connection to the internal server?

A listener that is down answers the SYN with a reset (TMG logs 10061, Zeek REJ); a host that is down
or filtered does not answer at all (10060, Zeek S0); a missing route fails at once (10065)
(causes.md C13). The probe connects to each target side by side, each with its own timeout.

Parameters (`spec`):
    targets   HOST[:PORT] list (default: the profile's internal_addresses, else internal_name)
    port      default port (443)
    timeout   seconds per connect (default 3)

Facts: `tcp.reachability`, one per target (subject "host:port").
"""

from __future__ import annotations

import time
from collections.abc import Mapping
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
    spec_list,
    spec_number,
    spec_port,
    spec_text,
    split_reachable,
)

PROBE = "tcp"
DEFAULT_TIMEOUT = 3.0


def probe(ctx: ProbeContext, spec: Mapping[str, Any]) -> ProbeResult:
    port = spec_port(spec, "port", 443)
    internal_name = spec_text(spec, "internal_name") or ctx.profile.internal_name
    raw = spec_list(spec, "targets") or list(ctx.profile.internal_addresses)
    if not raw and internal_name:
        raw = [internal_name]
    if not raw:
        return ProbeResult.unavailable("no target to connect to (give targets, internal_addresses or internal_name)")
    targets, held = split_reachable(list(dict.fromkeys(parse_endpoint(t, port) for t in raw)))
    if not targets:
        return ProbeResult.unavailable(held)
    timeout = spec_number(spec, "timeout", DEFAULT_TIMEOUT)

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
    return make_fact("tcp.reachability", str(endpoint), PROBE, check=check, source=str(endpoint),
                     host=endpoint.host, port=endpoint.port, outcome=outcome, detail=detail, elapsed_ms=elapsed)
