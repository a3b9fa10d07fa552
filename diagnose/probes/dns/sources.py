"""Where the TMG host gets a name's addresses: one interface (`NameSource`) for its HOSTS file, a live
DNS server and a server whose answers were recorded on TMG, so the `dns` probe asks them all alike.

A source answers one question at a time (`ask(name, rdtype, budget)`), following CNAMEs; the probe
merges a name's A and AAAA answers per source and picks the one Windows would use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from diagnose.probes.dns.hosts import HostsFile
from diagnose.probes.dns.recorded import RecordedServer
from diagnose.probes.netio import Endpoint, classify_os_error, elapsed_ms

MAX_CNAME_HOPS = 8


@dataclass(frozen=True)
class Answer:
    """What one source said about one name."""

    outcome: str  # ok | nxdomain | servfail | no-answer | timeout | refused | error | not-listed
    addresses: tuple[str, ...] = ()
    cname_chain: tuple[str, ...] = ()
    detail: str = ""
    elapsed_ms: float | None = None
    lines: tuple[int, ...] = ()


class NameSource(Protocol):
    """One place the TMG host looks a name up."""

    @property
    def kind(self) -> str:
        """`hosts` or `dns` (what rules read as a resolution's `source`)."""

    @property
    def label(self) -> str:
        """The HOSTS file's path, or the server as ADDR:PORT (a recorded one as its transcript names it)."""

    @property
    def origin(self) -> str:
        """Where the answer came from, for provenance: the file, or the live server."""

    @property
    def waits(self) -> bool:
        """True when asking may wait on the network (the probe reports progress and holds it to
        the deadline); a file answers at once."""

    def ask(self, name: str, rdtype: dns.rdatatype.RdataType, budget: float) -> Answer:
        """The answer about `name` for one record type, within `budget` seconds."""


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per source
class HostsSource:
    """The HOSTS file, read first by Windows. It lists a name's addresses of every family at once."""

    hosts: HostsFile
    kind: str = "hosts"
    waits: bool = False

    @property
    def label(self) -> str:
        return self.hosts.path

    @property
    def origin(self) -> str:
        return self.hosts.path

    def ask(self, name: str, rdtype: dns.rdatatype.RdataType, budget: float) -> Answer:
        entries = self.hosts.lookup(name)
        if not entries:
            return Answer("not-listed", detail=f"{name} is not in {self.hosts.path}")
        return Answer("ok", tuple(self.hosts.addresses(name)), lines=tuple(e.line for e in entries))


@dataclass(frozen=True, eq=False)
class LiveServer:
    """A DNS server asked now, over UDP (TCP when the answer is truncated)."""

    endpoint: Endpoint
    kind: str = "dns"
    waits: bool = True

    @property
    def label(self) -> str:
        return str(self.endpoint)

    @property
    def origin(self) -> str:
        return f"dns {self.label}"

    def ask(self, name: str, rdtype: dns.rdatatype.RdataType, budget: float) -> Answer:
        deadline = time.monotonic() + budget
        return resolve(name, rdtype, self.label, lambda qname, _lines: _ask(qname, rdtype, self.endpoint, deadline))


@dataclass(frozen=True, eq=False)
class RecordedSource:
    """A DNS server as it answered on TMG, replayed from a recorded transcript."""

    server: RecordedServer
    kind: str = "dns"
    waits: bool = False

    @property
    def label(self) -> str:
        return self.server.label

    @property
    def origin(self) -> str:
        return self.server.path

    def ask(self, name: str, rdtype: dns.rdatatype.RdataType, budget: float) -> Answer:
        return resolve(name, rdtype, self.label, lambda qname, lines: _recorded(qname, rdtype, self.server, lines))


def resolve(
    name: str,
    rdtype: dns.rdatatype.RdataType,
    label: str,
    query: Callable[[dns.name.Name, list[int]], tuple[str, dns.message.Message | None, str]],
) -> Answer:
    """One record type of `name` from one server, following CNAMEs (also across answers):
    `query(qname, lines)` asks the server once (noting the recorded lines it read)."""
    started = time.monotonic()
    chain: list[str] = []
    lines: list[int] = []

    def done(outcome: str, detail: str = "", addresses: tuple[str, ...] = ()) -> Answer:
        return Answer(outcome, addresses, tuple(chain), detail, elapsed_ms(started), tuple(lines))

    try:
        current = dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        return done("error", f"{name!r} is not a valid DNS name: {exc}")
    seen = {current}
    for _hop in range(MAX_CNAME_HOPS + 1):
        outcome, response, detail = query(current, lines)
        if response is None:
            return done(outcome, detail)
        target = current
        while cname := response.get_rrset(response.answer, target, dns.rdataclass.IN, dns.rdatatype.CNAME):
            target = cname[0].target
            if target in seen:
                return done("error", f"CNAME loop at {target.to_text(True)}")
            seen.add(target)
            chain.append(target.to_text(omit_final_dot=True).lower())
        data = response.get_rrset(response.answer, target, dns.rdataclass.IN, rdtype)
        if data:
            return done("ok", addresses=tuple(r.address for r in data))
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return done("nxdomain", f"{label} says {target.to_text(True)} does not exist")
        if rcode == dns.rcode.SERVFAIL:
            return done("servfail", f"{label} answered SERVFAIL")
        if rcode == dns.rcode.REFUSED:
            return done("refused", f"{label} refused the query")
        if rcode != dns.rcode.NOERROR:
            return done("error", f"{label} answered {dns.rcode.to_text(rcode)}")
        if target == current:
            return done("no-answer", f"no {rdtype.name} record")
        current = target  # the server gave the alias but not its data: ask for the target
    return done("error", f"CNAME chain longer than {MAX_CNAME_HOPS}")


def _recorded(
    qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, server: RecordedServer, lines: list[int]
) -> tuple[str, dns.message.Message | None, str]:
    recorded = server.lookup(qname, rdtype)
    if recorded is None:
        return "not-recorded", None, f"no recorded {rdtype.name} answer for {qname.to_text(True)} in {server.path}"
    lines.append(recorded.line)
    if recorded.rcode is None:
        return "timeout", None, f"{server.label} did not answer (recorded)"
    return "ok", server.response(recorded), ""


def _ask(
    qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, server: Endpoint, deadline: float
) -> tuple[str, dns.message.Message | None, str]:
    query = dns.message.make_query(qname, rdtype)
    try:
        left = deadline - time.monotonic()
        if left <= 0:
            raise dns.exception.Timeout
        response = dns.query.udp(query, server.host, timeout=left, port=server.port, ignore_unexpected=True)
        if response.flags & dns.flags.TC:
            left = deadline - time.monotonic()
            if left <= 0:
                raise dns.exception.Timeout
            response = dns.query.tcp(query, server.host, timeout=left, port=server.port)
    except dns.exception.Timeout:
        return "timeout", None, f"{server} did not answer in time"
    except OSError as exc:
        outcome = classify_os_error(exc)
        outcome = {"refused": "refused", "timeout": "timeout"}.get(outcome, "error")
        return outcome, None, f"{server}: {exc.strerror or exc}"
    except dns.exception.DNSException as exc:
        return "error", None, f"{server} sent a malformed answer: {exc}"
    return "ok", response, ""
