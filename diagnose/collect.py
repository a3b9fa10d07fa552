"""The collect stage: fill the checks catalogue from the profile and inputs, run the probes
concurrently, and gather their facts into an evidence bundle.

This module must not import the inference engine (`diagnose collect` runs where only probes can).

A check file (`checks/*.yaml`) holds a `checks:` list:

    checks:
      - id: dns-names
        probe: dns
        title: Resolve the published names and certificate FQDN as TMG does
        kinds: [dns.resolution, dns.consistency]
        requires: [published_names]       # context keys that must be non-empty
        network: true                      # sends traffic: skipped in offline runs (examples)
        params:
          names: "{published_names}"       # "{key}" alone keeps the value's type
          hint: "resolver {dns_servers}"   # inside a longer string it is formatted

Other top-level keys in a check file are catalogue data for probes (e.g. service lists) and are
ignored here.
"""

from __future__ import annotations

import concurrent.futures as cf
import re
import time
import typing
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from diagnose import __version__, interrupts
from diagnose.compat import shutdown_cancelling
from diagnose.errors import DiagnoseError, RuleError, UsageError
from diagnose.facts import EvidenceBundle, Fact, ProbeRun, ProbeStatus, Provenance
from diagnose.paths import data_dir
from diagnose.probes import PROBES, ProbeContext, ProbeResult, get_probe, params_class
from diagnose.probes.params import ProbeParams
from diagnose.profile import SiteProfile
from diagnose.safetext import printable, printable_data
from diagnose.yamlio import Lines, load_yaml

CHECK_KEYS = ("id", "probe", "title", "kinds", "requires", "params", "network", "description")
LATE = 5.0  # seconds past the deadline after which collect stops waiting for a probe
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
HINTS = {
    "log_paths": "--log PATH",
    "proxy_log_paths": "--proxy-log PATH (IIS, Exchange HttpProxy, HAProxy or nginx logs)",
    "capture_paths": "--capture PATH",
    "evidence_paths": "--evidence FILE",
    "services_export": "--services-export FILE (one per CAS) or --services-host HOST",
    "services_host": "--services-host HOST",
    "host_exports": "--host-export FILE (netstat -anob, netsh dynamicport, System events 4227/4231 from TMG)",
    "published_names": "published_names in the profile",
    "internal_name": "internal_name in the profile",
    "internal_addresses": "internal_addresses in the profile",
    "certificate_fqdn": "certificate_fqdn in the profile",
    "tmg_addresses": "tmg_addresses in the profile or --tmg ADDR (run on the TMG server itself)",
}


@dataclass(frozen=True)
class Check:
    id: str
    probe: str
    title: str
    kinds: tuple[str, ...]
    requires: tuple[str, ...]
    params: Mapping[str, Any]
    network: bool = False
    path: str = ""
    # the check file's line map and the keys to `params` in it: a parameter error names its key's file:line
    lines: Lines | None = field(default=None, compare=False, repr=False)
    at: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    def check_params(self) -> None:
        """The parameters as written against the probe's parameter class (RuleError at the key's line)."""
        if self.lines is not None:
            _check_params(self.probe, self.params, self.lines, self.at)


def load_checks(dirs: Sequence[Path], probes: Collection[str] | None = None, validate: bool = True) -> list[Check]:
    """Checks from every `*.yaml` in `dirs` (later directories override earlier ones by id). `probes`: only
    the checks of these probes, from the files that name one of them; None: all. Each check's parameters are
    read against its probe's parameter class, which imports the probe's module (a one-probe command does not
    load every probe nor parse every check file); with `validate` False, not here but by `collect`, for the
    checks that run (`run` does not load the DNS, TLS or capture code for a run on logs alone)."""
    found: dict[str, Check] = {}
    for directory in dirs:
        for path in sorted(directory.glob("*.yaml")):
            if probes is not None and not _may_hold(path, probes):
                continue
            data, lines = load_yaml(path)
            if not isinstance(data, dict) or "checks" not in data:
                continue
            if not isinstance(data["checks"], list):
                raise RuleError("checks must be a list", lines.at("checks"))
            for i, raw in enumerate(data["checks"]):
                at = ("checks", i)
                if not isinstance(raw, dict):
                    raise RuleError("each check is a mapping", lines.at(*at))
                for key in raw:
                    if key not in CHECK_KEYS:
                        raise RuleError(
                            f"unknown key {key!r} in check (allowed: {', '.join(CHECK_KEYS)})",
                            lines.at(*at, key, "<key>"),
                        )
                for key in ("id", "probe"):
                    if not isinstance(raw.get(key), str):
                        raise RuleError(f"check needs a string {key}", lines.at(*at))
                if raw["probe"] not in PROBES:
                    raise RuleError(
                        f"unknown probe {raw['probe']!r} (known: {', '.join(sorted(PROBES))})", lines.at(*at, "probe")
                    )
                if probes is not None and raw["probe"] not in probes:
                    continue
                params = raw.get("params") or {}
                if not isinstance(params, dict):
                    raise RuleError("params must be a mapping", lines.at(*at, "params"))
                check = Check(
                    raw["id"],
                    raw["probe"],
                    str(raw.get("title", raw["id"])),
                    tuple(raw.get("kinds") or ()),
                    tuple(raw.get("requires") or ()),
                    params,
                    bool(raw.get("network", False)),
                    f"{path}:{lines.line(*at)}",
                    lines,
                    (*at, "params"),
                )
                if validate:
                    check.check_params()
                found[raw["id"]] = check
    return list(found.values())


def _may_hold(path: Path, probes: Collection[str]) -> bool:
    """Whether the check file at `path` can hold a check of one of `probes`: it names one of them (a file
    that cannot be read is left to load_yaml's error)."""
    try:
        data = path.read_bytes()
    except OSError:
        return True
    return any(re.search(rb"\b%s\b" % re.escape(name.encode()), data) for name in probes)


def _check_params(probe: str, params: Mapping[str, Any], lines: Lines, at: tuple[Any, ...]) -> None:
    """A check's parameters against its probe's parameter class: an unknown key, or a value written
    in the file (not a "{key}" template) of the wrong type, is a RuleError at the key's file:line. A probe
    whose module does not load because a knowledge file it reads is wrong (thresholds, endpoint table) is
    left to that file's own error here; its parameters are read, and fail, when it runs."""
    try:
        cls = params_class(probe)
    except RuleError:
        return
    for key in cls.unknown(params):
        raise RuleError(
            f"unknown parameter {key!r} for the {probe} probe (known: {', '.join(cls.keys())})",
            lines.at(*at, key, "<key>"),
        )
    for key, value in params.items():
        try:
            cls.check_literal(key, value)
        except UsageError as exc:
            raise RuleError(str(exc), lines.at(*at, key)) from None


def probe_params(check: Check, context: Mapping[str, Any]) -> ProbeParams:
    """The check's parameters, filled in from the context, as its probe's parameter class."""
    try:
        return params_class(check.probe).parse(fill(dict(check.params), context))
    except UsageError as exc:
        raise UsageError(f"check {check.id} ({check.path}): {exc}") from None


def plan_check(
    probe: str,
    given: Mapping[str, Any],
    profile: SiteProfile | None = None,
    inputs: RunInputs | None = None,
    check_id: str | None = None,
) -> tuple[Check, ProbeParams]:
    """A one-check plan: the catalogue's check for `probe` (`check_id`, else the first of that probe), its
    template filled from the profile and the inputs, `given` values (where not empty) over it."""
    found = [
        c
        for c in load_checks(default_check_dirs(), probes=(probe,))
        if c.probe == probe and (check_id is None or c.id == check_id)
    ]
    check = found[0] if found else Check(check_id or probe, probe, probe, (), (), {})
    values = fill(dict(check.params), (inputs or RunInputs()).context(profile or SiteProfile()))
    values.update({k: v for k, v in given.items() if v is not None and v != "" and v != () and v != []})
    return replace(check, requires=(), network=False), params_class(probe).parse(values)


def default_check_dirs(extra: Sequence[Path] = ()) -> list[Path]:
    return [data_dir("checks"), *extra]


def fill(value: Any, context: Mapping[str, Any]) -> Any:
    """Fill `{key}` placeholders from the context; a lone placeholder keeps the value's type."""
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            return context.get(whole.group(1))
        return _PLACEHOLDER.sub(lambda m: _as_text(context.get(m.group(1))), value)
    if isinstance(value, list):
        return [fill(v, context) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, context) for k, v in value.items()}
    return value


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == ()


@dataclass
class RunInputs:
    """What the user gave a run beside the profile."""

    log_paths: list[str] = field(default_factory=list)
    capture_paths: list[str] = field(default_factory=list)
    evidence_paths: list[str] = field(default_factory=list)
    dns_servers: list[str] = field(default_factory=list)
    hosts_file: str | None = None
    services_export: list[str] = field(default_factory=list)  # one export per Exchange server
    services_host: str | None = None
    tz: str | None = None
    offline: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def context(self, profile: SiteProfile) -> dict[str, Any]:
        ctx: dict[str, Any] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in profile.__dict__.items()}
        ctx.update(
            log_paths=self.log_paths,
            capture_paths=self.capture_paths,
            evidence_paths=self.evidence_paths,
            services_export=self.services_export,
            services_host=self.services_host,
            tz=self.tz,
            offline=self.offline,
        )
        ctx["dns_servers"] = self.dns_servers or list(profile.dns_servers)
        ctx["hosts_file"] = self.hosts_file or profile.hosts_file
        ctx.update(self.extra)
        return ctx


Progress = typing.Callable[[str, str], None]


def _as_completed(futures: Mapping[cf.Future[Any], Check], until: float, poll: float = 0.1) -> Iterator[cf.Future[Any]]:
    """The futures as they finish, until time.monotonic() `until` (then cf.TimeoutError, as
    cf.as_completed). Ctrl-C meanwhile raises KeyboardInterrupt here, between two waits, and never inside
    concurrent.futures' own locking (see diagnose.interrupts.deferred)."""
    waiting = set(futures)
    while waiting:
        left = until - time.monotonic()
        if left <= 0:
            raise cf.TimeoutError(f"{len(waiting)} probe(s) still running")
        with interrupts.deferred():
            done, waiting = cf.wait(waiting, timeout=min(poll, left), return_when=cf.FIRST_COMPLETED)
        if interrupts.pending():
            raise KeyboardInterrupt
        yield from done


def _printable(fact: Fact) -> Fact:
    """The fact with the lone surrogates of its strings (bytes of file names that are not UTF-8) as
    printable escapes: the bundle stays UTF-8 and the rule engine takes it."""
    p = fact.provenance
    strings = [
        fact.subject,
        p.source or "",
        p.location or "",
        *(v for v in fact.attrs.values() if isinstance(v, str)),
        *(s for v in fact.attrs.values() if isinstance(v, tuple) for s in v),
    ]
    if all(printable(s) is s for s in strings):
        return fact
    return Fact(
        fact.kind,
        printable(fact.subject),
        printable_data(dict(fact.attrs)),
        Provenance(p.probe, p.check, printable_data(p.source), printable_data(p.location), p.time),
    )


def collect(
    checks: Sequence[Check],
    profile: SiteProfile,
    inputs: RunInputs,
    progress: Progress | None = None,
    timeout: float = 60.0,
    answers: Mapping[str, str] | None = None,
    description: str = "",
    rulebook_version: str | None = None,
    filled: Mapping[str, ProbeParams] | None = None,
    inline: bool = False,
) -> EvidenceBundle:
    """Run every applicable check concurrently; checks that cannot run are recorded with the reason.
    `filled` gives the parameters of checks (by id) already read (`diagnose probe X`). `inline` runs a
    lone check in the calling thread: its worker processes are then forked from a single-threaded
    process (probes/workers.py) instead of coming from a forkserver that may outlive the command."""
    report = progress or (lambda check, message: None)
    context = inputs.context(profile)
    runs: list[ProbeRun] = []
    facts: list[Fact] = []
    excerpts: dict[str, str] = {}
    todo: list[tuple[Check, ProbeParams]] = []
    for check in checks:
        missing = [key for key in check.requires if _empty(context.get(key))]
        if missing:
            reason = "needs " + ", ".join(HINTS.get(k, k) for k in missing)
            runs.append(ProbeRun(check.probe, ProbeStatus.UNAVAILABLE, reason, check.id, check.kinds))
            report(check.id, f"unavailable: {reason}")
            continue
        if check.network and inputs.offline:
            reason = "offline run: no network probes"
            runs.append(ProbeRun(check.probe, ProbeStatus.UNAVAILABLE, reason, check.id, check.kinds))
            report(check.id, f"unavailable: {reason}")
            continue
        given = (filled or {}).get(check.id)
        if given is None:
            check.check_params()  # (again, when load_checks read them: the probe's module is loaded to run anyway)
        todo.append((check, given or probe_params(check, context)))
    deadline = time.monotonic() + timeout
    if not (inline and len(todo) == 1):  # (a lone inline check forks its own workers: no multiprocessing here)
        from diagnose.probes import workers

        if any(check.probe in workers.WORKER_PROBES for check, _ in todo) and workers.may_use_workers(
            [*inputs.log_paths, *inputs.capture_paths, *inputs.extra.get("proxy_log_paths", ())],
            pooled=inputs.log_paths,
        ):
            workers.start_forkserver_deaf_to_ctrl_c()  # before any probe thread: see workers.py

    def run_one(check: Check, params: ProbeParams) -> tuple[ProbeResult, float, tuple[str, ...]]:
        interrupts.shield_thread()  # Ctrl-C is the main thread's; workers forked from here start deaf to it
        ctx = ProbeContext(deadline=deadline, progress=report, check=check.id)
        started = time.monotonic()
        report(check.id, "running")
        result = get_probe(check.probe)(ctx, params)
        return result, time.monotonic() - started, tuple(printable(n) for n in ctx.notes)

    results: dict[str, tuple[ProbeResult, float, tuple[str, ...]]] = {}
    started = time.monotonic()
    late = False
    if inline and len(todo) == 1:
        check, params = todo[0]
        result, elapsed, _ = results[check.id] = run_one(check, params)
        report(check.id, f"{result.status.value} ({len(result.facts)} facts, {elapsed:.2f} s)")
    elif todo:
        pool = cf.ThreadPoolExecutor(max_workers=min(16, len(todo)), thread_name_prefix="probe")
        futures = {pool.submit(run_one, check, spec): check for check, spec in todo}
        try:
            # readers stop themselves at the deadline; a probe still running LATE seconds after it is
            # left behind (recorded as not finished) rather than waited for
            for future in _as_completed(futures, until=max(time.monotonic(), deadline) + LATE):
                check = futures[future]
                result, elapsed, _ = results[check.id] = future.result()
                report(
                    check.id,
                    result.status.value
                    + (f": {result.reason}" if result.reason else "")
                    + f" ({len(result.facts)} facts, {elapsed:.2f} s)",
                )
        except KeyboardInterrupt:
            # Ctrl-C: keep what finished, mark the rest interrupted; running probes are abandoned
            # (their threads end with their own timeouts) and the caller still gets a usable bundle.
            for future, check in futures.items():
                if check.id not in results and future.done() and not future.cancelled() and not future.exception():
                    results[check.id] = future.result()
            interrupted = True
        except DiagnoseError:
            shutdown_cancelling(pool, futures, wait=False)
            raise
        except cf.TimeoutError:
            interrupted = late = True
        else:
            interrupted = False
        shutdown_cancelling(pool, futures, wait=not interrupted)
    for check, _ in todo:
        if check.id not in results:
            reason = (
                f"did not finish within the time allowed ({timeout:g} s)"
                if late
                else "interrupted (Ctrl-C) before it finished"
            )
            runs.append(
                ProbeRun(
                    check.probe, ProbeStatus.INTERRUPTED, reason, check.id, check.kinds, time.monotonic() - started
                )
            )
            report(check.id, reason)
            continue
        result, elapsed, notes = results[check.id]
        runs.append(ProbeRun(check.probe, result.status, result.reason, check.id, check.kinds, elapsed, notes))
        facts.extend(_printable(f) for f in result.facts)
        excerpts.update(result.excerpts)
    if not profile.is_empty():
        facts.append(profile.to_fact())
    order = {c.id: n for n, c in enumerate(checks)}
    runs.sort(key=lambda r: order.get(r.check or "", 0))
    return EvidenceBundle(
        facts=tuple(facts),
        probes=tuple(runs),
        profile=profile.to_json(),
        answers=dict(answers or {}),
        excerpts=excerpts,
        tool_version=__version__,
        rulebook_version=rulebook_version,
        description=description,
    )
