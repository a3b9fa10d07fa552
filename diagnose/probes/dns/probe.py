"""The `dns` probe: resolve names the way the TMG host does, and compare them with the internal server.

TMG connects to the name on the publishing rule's To tab; the published name and the certificate
FQDN must resolve, on TMG, to the internal (CAS) address too (causes.md C1). Windows resolves a name
from the HOSTS file first, then asks its configured DNS servers in order (the next one only when the
previous does not answer). This probe does the same, and also asks every configured server on its own,
so that split-brain DNS (servers that disagree) shows. The HOSTS file, live servers and recorded
servers are all `NameSource`s (sources.py), asked alike.

Parameters (`spec`):
    names             published names to resolve (role "published")
    certificate_fqdn  the name on the internal server's certificate (role "certificate")
    internal_name     the publishing rule's To name (role "internal")
    expect            the internal addresses
    servers           DNS servers as ADDR[:PORT] (default: the system's)
    hosts_file        HOSTS file to read first (default: the system's)
    recorded          files of answers recorded on the TMG host (Windows nslookup or Resolve-DnsName output,
                      or BIND nslookup or dig output), each recorded server answering as it did
    offline           true: ask no live server, only the HOSTS file and the recorded answers
    use_hosts         false to skip the HOSTS file altogether
    timeout           seconds allowed per name, server and record type (default 2)
    record_types      default [A, AAAA]
    use_system_resolvers  false: without `servers`, ask none (default: this host's resolvers)

Facts:
    dns.resolution    one per name and source (the HOSTS file, each DNS server); `effective: true` marks
                      the one the TMG host would use
    dns.address       one per address of a name's effective answer (subject "NAME ADDRESS"), with
                      `internal` telling whether it is one of the internal addresses
    dns.consistency   subject "names": do all names resolve alike, and to the internal addresses?
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.rdatatype
import dns.resolver

from diagnose.errors import UsageError
from diagnose.facts import Fact, ProbeStatus, make_fact
from diagnose.probes import ProbeContext, ProbeResult
from diagnose.probes.dns.hosts import HostsFile, normalise_name, read_hosts, system_hosts_path
from diagnose.probes.dns.recorded import read_recorded
from diagnose.probes.dns.sources import Answer, HostsSource, LiveServer, NameSource, RecordedSource
from diagnose.probes.netio import (
    NETWORK_ENV,
    Endpoint,
    canonical_address,
    endpoint,
    is_address,
    loopback_only,
    parse_endpoint,
    run_concurrently,
    split_reachable,
    unique,
)
from diagnose.probes.params import ProbeParams

PROBE = "dns"
DEFAULT_TIMEOUT = 2.0
ROLE_ORDER = ("published", "certificate", "internal")
# Outcomes in the order in which they settle a name's answer over its record types.
DEFINITIVE = ("ok", "nxdomain", "no-answer")


@dataclass
class NameReport:
    name: str
    roles: list[str]
    answers: dict[NameSource, Answer] = field(default_factory=dict)
    effective: NameSource | None = None

    @property
    def role(self) -> str:
        return self.roles[0]


# ------------------------------------------------------------------------------------------ probe


@dataclass(frozen=True)
class DnsParams(ProbeParams):
    """Parameters of the `dns` probe (see the module docstring)."""

    probe = PROBE
    names: tuple[str, ...] = ()
    certificate_fqdn: tuple[str, ...] = ()
    internal_name: tuple[str, ...] = ()
    expect: tuple[str, ...] = ()
    servers: tuple[str, ...] = ()
    hosts_file: str | None = None
    recorded: tuple[str, ...] = ()
    offline: bool = False
    use_hosts: bool = True
    use_system_resolvers: bool = True
    timeout: float = DEFAULT_TIMEOUT
    record_types: tuple[str, ...] = ("A", "AAAA")


def probe(ctx: ProbeContext, spec: DnsParams | Mapping[str, Any]) -> ProbeResult:
    params = DnsParams.of(spec)
    roles = _names_by_role(params)
    if not roles:
        return ProbeResult.unavailable("no names to resolve (give names, certificate_fqdn or internal_name)")
    expected = _addresses(params.expect, "expect")
    timeout = params.timeout
    rdtypes = _record_types(params.record_types)
    notes: list[str] = []
    excerpts: dict[str, str] = {}

    hosts: HostsFile | None = None
    offline = params.offline
    if params.use_hosts:
        named = params.hosts_file
        if named:
            hosts = read_hosts(named)  # the user named it: a missing file is an error
        elif offline:
            notes.append("offline: no HOSTS file given (this host's is not the TMG host's)")
        else:
            default = system_hosts_path()
            if default.is_file():
                hosts = read_hosts(default)
            else:
                notes.append(f"no HOSTS file at {default}")
        if hosts is not None:
            for bad in hosts.ignored:
                notes.append(f"{hosts.path}:{bad.line} ignored ({bad.why})")
                excerpts[f"{hosts.path}:{bad.line}"] = bad.text

    servers, server_note = ([], "offline: no live DNS server asked") if offline else _servers(params)
    servers, held = split_reachable(servers)
    if held:
        notes.append(held)
    recorded = [server for path in params.recorded for server in read_recorded(path)]
    if recorded and not params.servers and not offline:
        servers, server_note = [], ""  # recorded answers stand for the servers
    if server_note:
        notes.append(server_note)
    sources: list[NameSource] = [HostsSource(hosts)] if hosts is not None else []
    sources += [LiveServer(s) for s in servers] + [RecordedSource(r) for r in recorded]
    dns_sources = [s for s in sources if s.kind == "dns"]

    reports = [NameReport(name, rs) for name, rs in roles.items()]
    jobs = [(report, source, rdtype) for report in reports for source in sources for rdtype in rdtypes]

    def work(job: tuple[NameReport, NameSource, dns.rdatatype.RdataType], budget: float) -> Answer:
        report, source, rdtype = job
        ctx.progress(ctx.check or PROBE, f"asking {source.label} for {report.name} {rdtype.name}")
        return source.ask(report.name, rdtype, budget)

    def expired(job: tuple[NameReport, NameSource, dns.rdatatype.RdataType]) -> Answer:
        return Answer("timeout", detail="not asked: the probe's deadline had passed")

    # a file answers at once, whatever is left of the deadline; servers are asked side by side
    answered = iter(run_concurrently(ctx, [job for job in jobs if job[1].waits], work, expired, timeout))
    per_name: dict[tuple[str, NameSource], list[Answer]] = {}
    for report, source, rdtype in jobs:
        answer = next(answered) if source.waits else source.ask(report.name, rdtype, timeout)
        per_name.setdefault((report.name, source), []).append(answer)
    for report in reports:
        if hosts is not None:
            for e in hosts.lookup(report.name):
                excerpts[f"{hosts.path}:{e.line}"] = e.text
        for source in sources:
            merged = merge_record_types(per_name[(report.name, source)])
            if merged.outcome != "not-recorded":  # a recorded server that was never asked about this name
                report.answers[source] = merged
        report.effective = _effective_source(report, sources)

    facts: list[Fact] = []
    for report in reports:
        facts.extend(_resolution_facts(report, expected, ctx.check))
    if not any(r.effective for r in reports):
        return ProbeResult.unavailable("; ".join(notes) or "no HOSTS file and no DNS server to ask")
    facts.append(_consistency_fact(reports, expected, dns_sources, ctx.check))
    status = ProbeStatus.COMPLETE if dns_sources else ProbeStatus.PARTIAL
    return ProbeResult(tuple(facts), status, "; ".join(notes), excerpts)


# ------------------------------------------------------------------------------------ resolution


def merge_record_types(answers: Sequence[Answer]) -> Answer:
    """One answer for a name from one server, out of its A and AAAA answers.

    Addresses of either family make it `ok`; else NXDOMAIN settles it; else a failure (timeout, SERVFAIL,
    refused...) wins over "no records of this type"; a type with no recorded answer counts for nothing.
    """
    elapsed = max((a.elapsed_ms for a in answers if a.elapsed_ms is not None), default=None)
    chain = max((a.cname_chain for a in answers), key=len, default=())
    lines = tuple(sorted({n for a in answers for n in a.lines}))
    if lines:
        elapsed = None  # recorded answers: the time taken here says nothing
    ok = [a for a in answers if a.outcome == "ok"]
    if ok:
        addresses = tuple(unique(addr for a in ok for addr in a.addresses))
        return Answer("ok", addresses, chain, "", elapsed, lines)
    known = [a for a in answers if a.outcome != "not-recorded"] or list(answers)
    for preference in (("nxdomain",), tuple({a.outcome for a in known} - {"no-answer"}), ("no-answer",)):
        for a in known:
            if a.outcome in preference:
                return Answer(a.outcome, (), chain, a.detail, elapsed, lines)
    return Answer("error", (), chain, "no answer", elapsed, lines)


def _effective_source(report: NameReport, sources: Sequence[NameSource]) -> NameSource | None:
    """The source the TMG host would take: HOSTS when listed, else the first server that settles it."""
    asked = [s for s in sources if s in report.answers]
    for source in asked:
        if source.kind == "hosts" and report.answers[source].outcome == "ok":
            return source
    servers = [s for s in asked if s.kind != "hosts"]
    for source in servers:
        if report.answers[source].outcome in DEFINITIVE:
            return source
    if servers:
        return servers[0]
    return None  # no DNS server was asked and HOSTS does not list it: unknown


# ------------------------------------------------------------------------------------------ facts


def _resolution_facts(report: NameReport, expected: frozenset[str], check: str | None) -> list[Fact]:
    facts = []
    for source, answer in report.answers.items():
        location = "line " + ", ".join(str(n) for n in sorted(set(answer.lines))) if answer.lines else None
        facts.append(
            make_fact(
                "dns.resolution",
                report.name,
                PROBE,
                check=check,
                source=source.origin,
                location=location,
                name=report.name,
                role=report.role,
                roles=report.roles,
                source_kind=source.kind,
                server=source.label,
                outcome=answer.outcome,
                addresses=list(answer.addresses),
                cname_chain=list(answer.cname_chain) or None,
                matches_internal=_matches_internal(answer, expected),
                effective=source == report.effective,
                detail=answer.detail or None,
                elapsed_ms=answer.elapsed_ms,
            )
        )
    effective = report.answers.get(report.effective) if report.effective is not None else None
    if effective is not None and effective.outcome == "ok":
        facts.extend(_address_facts(report, effective, expected, facts[0], check))
    # `source` is the attribute rules read (hosts | dns); provenance keeps the file or server
    return [_rename_source(f) for f in facts]


def _address_facts(
    report: NameReport, answer: Answer, expected: frozenset[str], resolution: Fact, check: str | None
) -> list[Fact]:
    """One `dns.address` per address of the name's effective answer: a scalar `address` that rules
    can join to another fact's address (a log's `server`), which the list `addresses` cannot be."""
    assert report.effective is not None
    source = report.effective
    location = "line " + ", ".join(str(n) for n in sorted(set(answer.lines))) if answer.lines else None
    out = []
    for address in dict.fromkeys(_canonical(a) for a in answer.addresses):
        out.append(
            make_fact(
                "dns.address",
                f"{report.name} {address}",
                PROBE,
                check=check,
                source=source.origin,
                location=location,
                name=report.name,
                role=report.role,
                roles=report.roles,
                source_kind=source.kind,
                server=source.label,
                address=address,
                internal=(address in expected) if expected else None,
            )
        )
    return out


def _rename_source(fact: Fact) -> Fact:
    attrs = dict(fact.attrs)
    attrs["source"] = attrs.pop("source_kind")
    return Fact(fact.kind, fact.subject, attrs, fact.provenance)


def _matches_internal(answer: Answer, expected: frozenset[str]) -> bool | None:
    """True when every address is internal; False when it resolves elsewhere or not at all; else unknown.

    Only the address families of the internal addresses count: a profile that names the internal
    server by IPv4 alone says TMG reaches it over IPv4, so an AAAA answer that Windows also gets (a
    recorded nslookup asks for both) is shown but does not make the name resolve "elsewhere". A name
    with no address of those families at all does not resolve to the internal server."""
    if not expected:
        return None
    if answer.outcome == "ok":
        families = {_family(a) for a in expected}
        relevant = [a for a in answer.addresses if _family(a) in families]
        return bool(relevant) and all(_canonical(a) in expected for a in relevant)
    if answer.outcome in ("nxdomain", "no-answer"):
        return False
    return None


def _consistency_fact(
    reports: Sequence[NameReport], expected: frozenset[str], servers: Sequence[NameSource], check: str | None
) -> Fact:
    effective = {r.name: r.answers[r.effective] for r in reports if r.effective is not None}
    unknown = [r.name for r in reports if r.name not in effective]  # no source was asked: not evidence
    known = [r for r in reports if r.name in effective]
    families = {_family(a) for a in expected} or {4, 6}  # see _matches_internal
    sets = {
        name: frozenset(_canonical(a) for a in ans.addresses if _family(a) in families)
        for name, ans in effective.items()
        if ans.outcome == "ok"
    }
    unresolved = [r.name for r in known if r.name not in sets]
    consistent: bool | None = not unresolved and len(set(sets.values())) <= 1
    if consistent and unknown:
        consistent = None
    all_internal: bool | None = None
    if expected:
        mismatched = [r.name for r in known if not sets.get(r.name) or not sets[r.name] <= expected]
        all_internal = False if mismatched else (None if unknown else True)
    else:
        reference = next((sets[r.name] for r in known if "internal" in r.roles and r.name in sets), None)
        if reference is None and sets:
            counts: dict[frozenset[str], int] = {}
            for s in sets.values():
                counts[s] = counts.get(s, 0) + 1
            reference = max(counts, key=lambda s: counts[s])
        mismatched = [r.name for r in known if r.name not in sets or sets[r.name] != reference]
    split = [
        r.name
        for r in reports
        if len({(r.answers[s].outcome, frozenset(r.answers[s].addresses)) for s in servers if s in r.answers}) > 1
    ]
    by_role = {role: [r.name for r in reports if role in r.roles] for role in ROLE_ORDER}
    published_sets = {sets.get(n) for n in by_role["published"]}
    cert_sets = {sets.get(n) for n in by_role["certificate"]}
    published_match_certificate = None
    if by_role["published"] and by_role["certificate"]:
        published_match_certificate = None not in published_sets | cert_sets and len(published_sets | cert_sets) == 1
    detail = "; ".join(_describe(r) for r in reports)
    if expected:
        detail += f"; internal addresses: {', '.join(sorted(expected))}"
    return make_fact(
        "dns.consistency",
        "names",
        PROBE,
        check=check,
        names=[r.name for r in reports],
        consistent=consistent,
        all_internal=all_internal,
        mismatched=mismatched,
        unresolved=unresolved,
        unknown=unknown,
        split_brain=split,
        published_match_certificate=published_match_certificate,
        published_names=by_role["published"],
        certificate_names=by_role["certificate"],
        internal_names=by_role["internal"],
        expected=sorted(expected),
        detail=detail,
    )


def _describe(report: NameReport) -> str:
    if report.effective is None:
        return f"{report.name}: unknown (not in HOSTS, no DNS server asked)"
    answer = report.answers[report.effective]
    where = "HOSTS" if report.effective.kind == "hosts" else f"DNS {report.effective.label}"
    if answer.outcome == "ok":
        via = f" via {' -> '.join(answer.cname_chain)}" if answer.cname_chain else ""
        return f"{report.name} -> {', '.join(answer.addresses)}{via} ({where})"
    return f"{report.name}: {answer.outcome} ({where})"


# ------------------------------------------------------------------------------------------ inputs


def _names_by_role(params: DnsParams) -> dict[str, list[str]]:
    roles: dict[str, list[str]] = {}
    for key, role in (("names", "published"), ("certificate_fqdn", "certificate"), ("internal_name", "internal")):
        for raw in getattr(params, key):
            name = normalise_name(raw)
            if not name:
                continue
            roles.setdefault(name, [])
            if role not in roles[name]:
                roles[name].append(role)
    return roles


def _family(address: str) -> int:
    try:
        return ipaddress.ip_address(address.partition("%")[0]).version
    except ValueError:
        return 0


def _canonical(address: str) -> str:
    try:
        return canonical_address(address.split("%", 1)[0])
    except ValueError:
        return address


def _addresses(values: Sequence[str], key: str) -> frozenset[str]:
    out = set()
    for value in values:
        if not is_address(value):
            raise UsageError(f"{key}: {value!r} is not an IP address")
        out.add(_canonical(value))
    return frozenset(out)


def _record_types(values: Sequence[str]) -> tuple[dns.rdatatype.RdataType, ...]:
    out = []
    for value in values:
        try:
            rdtype = dns.rdatatype.from_text(value.upper())
        except dns.exception.DNSException:
            raise UsageError(f"record_types: unknown record type {value!r}") from None
        if rdtype not in (dns.rdatatype.A, dns.rdatatype.AAAA):
            raise UsageError(f"record_types: only A and AAAA carry addresses, not {value!r}")
        out.append(rdtype)
    return tuple(out)


def _servers(params: DnsParams) -> tuple[list[Endpoint], str]:
    given = params.servers
    if given:
        servers = []
        for text in given:
            server = parse_endpoint(text, 53)
            if not is_address(server.host):
                raise UsageError(
                    f"DNS server {text!r}: give an IP address, optionally with :PORT "
                    "(an IPv6 address with a port in brackets: [fd00::53]:53)"
                )
            servers.append(server)
        return unique_endpoints(servers), ""
    if not params.use_system_resolvers:
        return [], "no DNS server given"
    if loopback_only():  # even a loopback stub resolver forwards beyond this host
        return [], f"{NETWORK_ENV}=loopback: this host's resolvers are not asked"
    try:
        resolver = dns.resolver.Resolver(configure=True)
    except (dns.resolver.NoResolverConfiguration, OSError) as exc:
        return [], f"no DNS servers configured on this host ({exc})"
    servers = [endpoint(str(ns), resolver.port) for ns in resolver.nameservers if is_address(str(ns))]
    return servers, "" if servers else "no DNS servers configured on this host"


def unique_endpoints(endpoints: Sequence[Endpoint]) -> list[Endpoint]:
    seen: dict[Endpoint, None] = {}
    for e in endpoints:
        seen.setdefault(e, None)
    return list(seen)
