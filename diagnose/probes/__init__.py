"""Probes gather evidence and emit facts, never conclusions.

Every probe has one shape: `probe(ctx, params) -> ProbeResult`. `ctx` carries the deadline, a logger,
a progress callback and the run's notes (`ctx.warn`); `params` is the probe's frozen parameter class
(`PARAMS` below), read from the check's `params` once they are filled in from the profile: the profile
reaches a probe only through its check. Expected failures (timeouts, refused, missing file, bad format) become an
`unavailable` or `partial` result with a reason; they are not raised.

Probes are listed in the explicit `PROBES` table below as `module:function` strings, imported only
when used, so that `diagnose analyze` never pays for dnspython, psutil or cryptography, and
`diagnose collect` never imports the inference engine.
"""

from __future__ import annotations

import importlib
import logging
import time
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from diagnose.errors import UsageError
from diagnose.facts import Fact, ProbeRun, ProbeStatus

if typing.TYPE_CHECKING:
    from diagnose.probes.params import ProbeParams

Progress = typing.Callable[[str, str], None]
MAX_NOTES = 200  # notes kept per check run (a log with a million bad lines must not fill the bundle)


def _no_progress(check: str, message: str) -> None:
    return None


@dataclass
class ProbeContext:
    deadline: float | None = None  # time.monotonic() value; None = no deadline
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("diagnose.probe"))
    progress: Progress = _no_progress
    check: str | None = None
    notes: list[str] = field(default_factory=list)  # warnings of this run, carried into the bundle

    def warn(self, message: str) -> None:
        """Note a warning (a skipped input, a partial read, a fallback): logged and kept for the bundle."""
        if len(self.notes) < MAX_NOTES:
            self.notes.append(message)
        elif len(self.notes) == MAX_NOTES:
            self.notes.append("... more notes not kept")
        self.log.warning("%s", message)

    def remaining(self, default: float = 5.0) -> float:
        """Seconds left before the deadline (at least 0.05), or `default` when there is none."""
        if self.deadline is None:
            return default
        return max(0.05, min(default, self.deadline - time.monotonic()))


@dataclass(frozen=True)
class ProbeResult:
    facts: tuple[Fact, ...]
    status: ProbeStatus = ProbeStatus.COMPLETE
    reason: str = ""
    excerpts: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def unavailable(cls, reason: str) -> ProbeResult:
        return cls((), ProbeStatus.UNAVAILABLE, reason)


class Probe(Protocol):
    def __call__(self, ctx: ProbeContext, spec: Any) -> ProbeResult: ...


# The probe table: name -> "module:function". Add a probe here and nowhere else.
PROBES: dict[str, str] = {
    "evidence": "diagnose.probes.evidence:probe",
    "dns": "diagnose.probes.dns.probe:probe",
    "tls": "diagnose.probes.tls:probe",
    "http": "diagnose.probes.http:probe",
    "tcp": "diagnose.probes.tcp:probe",
    "services": "diagnose.probes.services.probe:probe",
    "host": "diagnose.probes.host.probe:probe",
    "logs": "diagnose.probes.logs:probe",
    "proxylogs": "diagnose.probes.proxylogs:probe",
    "capture": "diagnose.probes.capture:probe",
}


# Each probe's parameter class: name -> "module:class".
PARAMS: dict[str, str] = {
    "evidence": "diagnose.probes.evidence:EvidenceParams",
    "dns": "diagnose.probes.dns.probe:DnsParams",
    "tls": "diagnose.probes.tls:TlsParams",
    "http": "diagnose.probes.http:HttpParams",
    "tcp": "diagnose.probes.tcp:TcpParams",
    "services": "diagnose.probes.services.probe:ServicesParams",
    "host": "diagnose.probes.host.probe:HostParams",
    "logs": "diagnose.probes.logs:LogsParams",
    "proxylogs": "diagnose.probes.proxylogs:ProxyLogsParams",
    "capture": "diagnose.probes.capture:CaptureParams",
}


def params_class(name: str) -> type[ProbeParams]:
    """The parameter class of probe `name` (imports the probe's module)."""
    if name not in PARAMS:
        raise UsageError(f"unknown probe {name!r} (known: {', '.join(sorted(PROBES))})")
    module_name, _, cls = PARAMS[name].partition(":")
    found: type[ProbeParams] = getattr(importlib.import_module(module_name), cls)
    return found


def get_probe(name: str) -> Probe:
    try:
        target = PROBES[name]
    except KeyError:
        raise UsageError(f"unknown probe {name!r} (known: {', '.join(sorted(PROBES))})") from None
    module_name, _, func = target.partition(":")
    probe: Probe = getattr(importlib.import_module(module_name), func)
    return probe


def run_probe(
    name: str, ctx: ProbeContext, spec: ProbeParams | Mapping[str, Any], kinds: tuple[str, ...] = ()
) -> tuple[ProbeResult, ProbeRun]:
    """Run one probe and describe the run; the caller decides what to do with both."""
    started = time.monotonic()
    result = get_probe(name)(ctx, spec)
    run = ProbeRun(name, result.status, result.reason, ctx.check, kinds, time.monotonic() - started)
    return result, run
