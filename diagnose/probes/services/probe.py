"""The `services` probe: the state of Exchange, IIS, TMG (and Linux proxy) services, and what it breaks.

One interface, four backends, chosen by the spec:

* `export: FILE`  - a file an administrator exported (`sc query`, Get-Service / Win32_Service CSV or JSON,
                    `systemctl show`): `ExportBackend`;
* `host: HOST`    - a remote Windows server, read with `sc \\\\HOST query` and `sc \\\\HOST qc NAME`
                    (a subprocess with an argument list, never a shell): `ScBackend`;
* neither, on Windows - the local service manager through psutil `win_service_iter`: `PsutilBackend`;
* neither, on Linux with systemd - `systemctl show` for the catalogue's units: `SystemdBackend`.

Elsewhere the probe is `unavailable` (never "healthy"). Facts:

* `service.state` for every catalogue service found (subject `HOST/NAME`);
* `service.protocol_impact` for each catalogue service that is not running although it should be, with
  the published protocols it breaks and `impact` = the share of the published protocols affected.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from diagnose.compat import removeprefix
from diagnose.errors import InputError, UsageError
from diagnose.exchange import catalogue as endpoint_catalogue
from diagnose.facts import Fact, ProbeStatus, make_fact
from diagnose.probes import ProbeContext, ProbeResult
from diagnose.probes.params import ProbeParams, split_field
from diagnose.probes.services.catalogue import Catalogue, CatalogueService, load_catalogue
from diagnose.probes.services.exports import (
    RUNNING,
    STOPPED,
    UNKNOWN,
    ServiceRecord,
    merge_start_types,
    parse_sc_qc,
    parse_sc_query,
    parse_systemctl_show,
    read_export,
    start_type_from,
    state_from,
)

PROBE = "services"


class BackendUnavailable(Exception):
    """The backend cannot run here or could not reach its source (an expected failure)."""


@dataclass(frozen=True)
class BackendRead:
    records: tuple[ServiceRecord, ...]
    source: str  # file path, "sc \\\\HOST", "psutil", "systemctl"
    detail: str = ""  # e.g. the export format
    problems: tuple[str, ...] = ()  # per-service failures that make the read partial
    excerpts: Mapping[str, str] = field(default_factory=dict)


class ServiceBackend(Protocol):
    backend: str  # psutil | sc | export | systemd

    @property
    def host(self) -> str | None: ...

    def read(self, names: Collection[str]) -> BackendRead:
        """Read the services; `names` are the catalogue's short names (a backend may read more)."""
        ...


# ------------------------------------------------------------------------------------ backends


class ExportBackend:
    backend = "export"

    def __init__(self, path: Path | str, host: str | None = None) -> None:
        self.path = Path(path)
        self.host = host

    def read(self, names: Collection[str]) -> BackendRead:
        fmt, records = read_export(self.path, self.host)
        hosts = {r.host for r in records if r.host}
        if self.host is None and len(hosts) == 1:
            self.host = hosts.pop()
        return BackendRead(tuple(records), str(self.path), f"{fmt} export")


class PsutilBackend:
    """The local Windows service manager, through psutil. `api` is the psutil module (or a recording)."""

    backend = "psutil"

    def __init__(self, api: Any = None, host: str | None = None) -> None:
        if api is None:
            import psutil

            api = psutil
        self.api = api
        self.host = host or _local_host()

    def read(self, names: Collection[str]) -> BackendRead:
        if not hasattr(self.api, "win_service_iter"):
            raise BackendUnavailable(f"psutil service calls are not available on this platform ({sys.platform})")
        wanted = {n.lower() for n in names}
        errors: tuple[type[BaseException], ...] = (OSError, getattr(self.api, "Error", OSError))
        records: list[ServiceRecord] = []
        problems: list[str] = []
        try:
            services = list(self.api.win_service_iter())
        except errors as exc:
            raise BackendUnavailable(f"cannot enumerate services: {exc}") from None
        for svc in services:
            name = svc.name()
            if wanted and name.lower() not in wanted:
                continue
            try:
                info = svc.as_dict()  # psutil.AccessDenied for services the account may not query
            except errors as exc:
                problems.append(f"{name}: {exc}")
                continue
            status = str(info.get("status") or "")
            records.append(
                ServiceRecord(
                    name=str(info.get("name") or name),
                    state=state_from(status) if status else UNKNOWN,
                    start_type=start_type_from(info["start_type"]) if info.get("start_type") else None,
                    display_name=info.get("display_name") or svc.display_name(),
                    host=self.host,
                    source="psutil",
                    location=None,
                    detail=f"status {status}" + (f", pid {info['pid']}" if info.get("pid") else ""),
                )
            )
        return BackendRead(tuple(records), "psutil", "win_service_iter", tuple(problems))


Runner = typing.Callable[[typing.List[str], float], "subprocess.CompletedProcess[bytes]"]


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)


_HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,252})$|^[0-9a-fA-F:]+$")


def valid_host(host: str) -> str:
    host = removeprefix(host.strip(), "\\\\")
    if not _HOST_RE.match(host):
        raise UsageError(f"not a host name or address: {host!r}")
    return host


class ScBackend:
    """A remote Windows server: `sc \\\\HOST query type= service state= all`, then `sc \\\\HOST qc NAME`."""

    backend = "sc"

    def __init__(self, host: str, sc_path: str | None = None, timeout: float = 15.0, runner: Runner = _run) -> None:
        self.host = valid_host(host)
        self.sc_path = sc_path
        self.timeout = timeout
        self.runner = runner

    def _sc(self) -> str:
        if self.sc_path:
            return self.sc_path
        found = shutil.which("sc.exe") if sys.platform != "win32" else (shutil.which("sc") or shutil.which("sc.exe"))
        if not found:
            raise BackendUnavailable(
                "sc.exe not found: remote service queries need a Windows host "
                "(or export the list on the server and use --services-export)"
            )
        return found

    def _call(self, args: list[str]) -> str:
        argv = [self._sc(), f"\\\\{self.host}", *args]
        try:
            done = self.runner(argv, self.timeout)
        except subprocess.TimeoutExpired:
            raise BackendUnavailable(
                f"sc \\\\{self.host} {' '.join(args)} timed out after {self.timeout:g} s"
            ) from None
        except OSError as exc:
            raise BackendUnavailable(f"cannot run sc: {exc.strerror or exc}") from None
        text = _decode_console(done.stdout)
        if done.returncode != 0:
            message = " ".join(
                line.strip() for line in (text + _decode_console(done.stderr)).splitlines() if line.strip()
            )
            raise BackendUnavailable(f"sc \\\\{self.host} {args[0]} failed (exit {done.returncode}): {message[:200]}")
        return text

    def read(self, names: Collection[str]) -> BackendRead:
        source = f"sc \\\\{self.host}"
        query = self._call(["query", "type=", "service", "state=", "all"])
        try:
            records = parse_sc_query(query, f"{source} query", self.host)
        except InputError as exc:
            raise BackendUnavailable(f"unexpected sc query output: {exc}") from None
        wanted = {n.lower() for n in names}
        if wanted:
            records = [r for r in records if r.name.lower() in wanted]
        start_types: dict[str, tuple[str, str | None]] = {}
        problems: list[str] = []
        for rec in records:
            try:
                start_types.update(parse_sc_qc(self._call(["qc", rec.name]), f"{source} qc {rec.name}"))
            except (BackendUnavailable, InputError) as exc:
                problems.append(f"{rec.name}: {exc}")
        return BackendRead(tuple(merge_start_types(records, start_types)), source, "sc query + qc", tuple(problems))


def _decode_console(data: bytes) -> str:
    for enc in ("utf-8", "cp850"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


class SystemdBackend:
    """Local systemd units, read with `systemctl show -p ... UNIT...`."""

    backend = "systemd"
    PROPERTIES = "Id,Names,Description,LoadState,ActiveState,SubState,UnitFileState"

    def __init__(self, systemctl: str | None = None, timeout: float = 10.0, runner: Runner = _run) -> None:
        self.systemctl = systemctl
        self.timeout = timeout
        self.runner = runner
        self.host: str | None = _local_host()

    def read(self, names: Collection[str]) -> BackendRead:
        systemctl = self.systemctl or shutil.which("systemctl")
        if not systemctl:
            raise BackendUnavailable("systemctl not found")
        if not self.systemctl and not Path("/run/systemd/system").is_dir():
            raise BackendUnavailable("systemd is not running on this host")
        units = [f"{n}.service" for n in names if re.fullmatch(r"[A-Za-z0-9@._\-]+", n)] or ["*.service"]
        try:
            done = self.runner([systemctl, "show", "-p", self.PROPERTIES, "--", *units], self.timeout)
        except subprocess.TimeoutExpired:
            raise BackendUnavailable(f"systemctl show timed out after {self.timeout:g} s") from None
        except OSError as exc:
            raise BackendUnavailable(f"cannot run systemctl: {exc.strerror or exc}") from None
        if done.returncode != 0:
            raise BackendUnavailable(
                f"systemctl show failed (exit {done.returncode}): {_decode_console(done.stderr).strip()[:200]}"
            )
        try:
            records = parse_systemctl_show(_decode_console(done.stdout), "systemctl show", self.host)
        except InputError as exc:
            raise BackendUnavailable(f"unexpected systemctl output: {exc}") from None
        return BackendRead(tuple(records), "systemctl", "systemctl show")


def _local_host() -> str:
    return os.environ.get("COMPUTERNAME") or socket.gethostname() or "localhost"


@dataclass(frozen=True)
class ServicesParams(ProbeParams):
    """Parameters of the `services` probe: exported lists (one per server) or a host queried with sc.exe
    (else this machine), the Exchange version and published protocols that rate the impact, `all` to
    report every service read, `offline` to read only exports, and the internal server's name, which an
    export that does not name its server is taken for when it is the only export."""

    probe = PROBE
    export: tuple[str, ...] = ()
    export_host: str | None = None
    host: str | None = None
    sc_path: str | None = None
    exchange_version: str | None = None
    published: tuple[str, ...] = split_field()
    all: bool = False
    offline: bool = False
    internal_name: str | None = None


def choose_backend(spec: ServicesParams | Mapping[str, Any]) -> ServiceBackend:
    """`export` wins over `host`; neither means this machine (psutil on Windows, systemd on Linux)."""
    params = ServicesParams.of(spec)
    if params.export and params.host:
        raise UsageError("give either a services export or a services host, not both")
    if params.export:
        return ExportBackend(Path(params.export[0]), params.export_host)
    if params.host:
        return ScBackend(params.host, params.sc_path)
    if sys.platform == "win32":
        return PsutilBackend()
    if sys.platform.startswith("linux"):
        return _LocalLinux()
    return PsutilBackend()


class _LocalLinux:
    """On Linux: psutil has no service calls; read systemd if it runs, else say so."""

    backend = "systemd"

    def __init__(self) -> None:
        self.host: str | None = _local_host()
        self.systemd = SystemdBackend()

    def read(self, names: Collection[str]) -> BackendRead:
        try:
            return self.systemd.read(names)
        except BackendUnavailable as exc:
            raise BackendUnavailable(
                f"psutil service calls are not available on this platform ({sys.platform}) and {exc}; "
                "use --services-export FILE or --services-host HOST"
            ) from None


# ---------------------------------------------------------------------------------------- probe


def probe(
    ctx: ProbeContext,
    spec: ServicesParams | Mapping[str, Any],
    backend: ServiceBackend | None = None,
    catalogue: Catalogue | None = None,
) -> ProbeResult:
    """Read the services (one backend, or one per export file) and rate what the stopped ones break."""
    params = ServicesParams.of(spec)
    catalogue = catalogue or load_catalogue()
    table = endpoint_catalogue()  # the versions (and their aliases) and protocols of the endpoint table in force
    version = table.version_of(params.exchange_version)
    if params.exchange_version and version is None:
        raise UsageError(
            f"exchange_version must be one of {', '.join(table.version_names)}, got {params.exchange_version!r}"
        )
    published = list(params.published)
    for p in published:
        if p not in table.protocol_names:
            raise UsageError(f"unknown published protocol {p!r} (one of {', '.join(table.protocol_names)})")
    exports = list(params.export)
    if backend is None and not exports and params.offline:
        return ProbeResult.unavailable("offline run: no services export given, and live queries are off")
    if backend is not None:
        backends: list[ServiceBackend] = [backend]
    elif len(exports) > 1:
        if params.host:
            raise UsageError("give either a services export or a services host, not both")
        backends = [ExportBackend(Path(e)) for e in exports]
    else:
        backends = [choose_backend(params)]
    # an export that does not name its server is the profile's server when it is the only export
    only = params.internal_name if len(exports) == 1 and backend is None else None
    results = [_read_one(ctx, b, catalogue, version, published, params.all, only) for b in backends]
    if len(results) == 1:
        return results[0]
    facts = tuple(f for r in results for f in r.facts)
    excerpts = {k: v for r in results for k, v in r.excerpts.items()}
    worst = ProbeStatus.PARTIAL if any(r.status != ProbeStatus.COMPLETE for r in results) else ProbeStatus.COMPLETE
    return ProbeResult(facts, worst, " | ".join(r.reason for r in results), excerpts)


def _read_one(
    ctx: ProbeContext,
    backend: ServiceBackend,
    catalogue: Catalogue,
    version: str | None,
    published: list[str],
    emit_all: bool,
    profile_host: str | None = None,
) -> ProbeResult:
    ctx.progress(ctx.check or PROBE, f"reading services ({backend.backend})")
    try:
        read = backend.read(() if emit_all else catalogue.names())
    except BackendUnavailable as exc:
        return ProbeResult.unavailable(str(exc))
    facts: list[Fact] = []
    excerpts: dict[str, str] = dict(read.excerpts)
    found: set[str] = set()
    not_running: list[str] = []
    # IIS services count as Exchange's only on a server that has Exchange services
    entries = [catalogue.lookup(r.name) for r in read.records]
    exchange_host = any(e is not None and e.role == "exchange" and not e.shared for e in entries)
    for rec in read.records:
        entry = catalogue.lookup(rec.name)
        if entry is None and not emit_all:
            continue
        role = "other" if entry is None or (entry.shared and not exchange_host) else entry.role
        rec_host, host_from = _host_of(rec, backend, profile_host, read.source)
        name = entry.name if entry else rec.name  # canonical casing, so rules match `MSExchangeFBA`
        found.add(name.lower())
        subject = f"{rec_host}/{name}"
        common: dict[str, Any] = {"source": rec.source or read.source, "location": rec.location, "check": ctx.check}
        facts.append(
            make_fact(
                "service.state",
                subject,
                PROBE,
                **common,
                name=name,
                display_name=rec.display_name,
                state=rec.state,
                start_type=rec.start_type,
                host=rec_host,
                host_from=host_from,
                backend=backend.backend,
                role=role,
                raw_state=rec.detail,
                expected_start=entry.start if entry else None,
                versions=list(entry.versions) if entry else None,
            )
        )
        if rec.location and rec.detail and rec.state != RUNNING:
            loc = removeprefix(rec.location, "line ")
            excerpts[f"{rec.source}:{loc}"] = f"{name}: {rec.detail}"
        impact = _impact(entry, rec, version, published) if entry and role != "other" else None
        if impact is None:
            continue
        not_running.append(name)
        facts.append(
            make_fact(
                "service.protocol_impact",
                subject,
                PROBE,
                **common,
                service=name,
                state=rec.state,
                start_type=rec.start_type,
                host=rec_host,
                host_from=host_from,
                backend=backend.backend,
                role=role,
                published=published or None,
                exchange_version=version,
                **impact,
            )
        )
    status = ProbeStatus.PARTIAL if read.problems else ProbeStatus.COMPLETE
    where = f"{read.source}" + (f" ({read.detail})" if read.detail else "")
    reason = (
        f"{len(read.records)} services read from {where}; {len(found)} in the catalogue"
        + (f"; not running: {', '.join(not_running)}" if not_running else "")
        + (f"; could not read: {'; '.join(read.problems[:5])}" if read.problems else "")
    )
    if not published:
        reason += "; published protocols unknown, so impact is not rated"
    return ProbeResult(tuple(facts), status, reason, excerpts)


def _host_of(rec: ServiceRecord, backend: ServiceBackend, profile_host: str | None, source: str) -> tuple[str, str]:
    """The server a service record is about, and where that name comes from, so that every
    explanation says which server it speaks of: the export's own name for it (or the machine
    queried); for an export that names none (Get-Service's MachineName ".", `sc query`), the
    profile's internal name when it is the only export, else the export's file name (one per CAS)."""
    if rec.host:
        return rec.host, "export" if backend.backend == "export" else "query"
    if backend.host:
        return backend.host, "export" if backend.backend == "export" else "query"
    if profile_host:
        return profile_host, "profile"
    return Path(source).name, "file"


def _impact(
    entry: CatalogueService, rec: ServiceRecord, version: str | None, published: list[str]
) -> dict[str, Any] | None:
    """What a catalogue service that is not running breaks; None when its state is normal or unknown."""
    if rec.state in (RUNNING, UNKNOWN) or not entry.applies_to(version):
        return None
    if rec.state == STOPPED and entry.start != "automatic" and rec.start_type != "automatic":
        return None  # a manual service that is stopped is normal
    affected = [p for p in published if p in entry.protocols]
    required_roles = entry.required_roles(version) if entry.role == "exchange" else ()
    return {
        "required": bool(required_roles),
        "required_roles": list(required_roles) or None,
        "protocols": list(entry.protocols),
        "protocol_count": len(entry.protocols),
        "published_affected": affected if published else None,
        "impact": round(len(affected) / len(published), 4) if published else None,
        "basis": entry.basis,
        "criticality": entry.criticality,
    }
