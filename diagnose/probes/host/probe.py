"""The `host` probe: TCP state, ephemeral port usage and the proxy process, read on this machine.

Works wherever psutil does. Facts:

* `host.tcp_states` "all": connections by state (TIME_WAIT, CLOSE_WAIT, SYN_SENT, ESTABLISHED...);
* `host.tcp_states` "remote:ADDR:PORT" for the busiest remote endpoints and for every endpoint on a
  published internal server (`leg: server`: the TMG-to-server leg, where TMG's abortive close exists
  precisely so that TMG holds no TIME_WAIT);
* `host.port_usage` "tcp": the ephemeral range (Windows `netsh int ipv4 show dynamicport tcp`, Linux
  `/proc/sys/net/ipv4/ip_local_port_range`), how much of it is held, and how long TIME_WAIT lasts
  (Windows `TcpTimedWaitDelay`, default 240 s; Linux: the kernel constant of 60 s);
* `host.process` for each running proxy process (TMG's `wspsrv.exe` by default): CPU and memory.

Spec keys (all optional): `server_addresses` (defaults to the profile's internal_addresses),
`remote_ports` (only these remote ports count as the server leg), `process_names`, `top` (endpoints),
`tmg_addresses` (when given and none of them is an address of this host, the probe is `unavailable`:
the TCP state of an analyst's workstation says nothing about TMG).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from diagnose.compat import SLOTS, removesuffix
from diagnose.facts import Fact, ProbeStatus, make_fact
from diagnose.probes import ProbeContext, ProbeResult
from diagnose.probes.params import ProbeParams, split_field

PROBE = "host"
DEFAULT_PROCESSES = ("wspsrv.exe",)
LINUX_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
WINDOWS_TIME_WAIT_DEFAULT = 240  # seconds, TcpTimedWaitDelay absent (causes.md C10 / B1)
LINUX_TIME_WAIT = 60  # TCP_TIMEWAIT_LEN, a compile-time constant in Linux
_STATE_ATTRS = {
    "ESTABLISHED": "established",
    "TIME_WAIT": "time_wait",
    "CLOSE_WAIT": "close_wait",
    "SYN_SENT": "syn_sent",
    "SYN_RECV": "syn_recv",
    "FIN_WAIT1": "fin_wait",
    "FIN_WAIT2": "fin_wait",
    "LAST_ACK": "last_ack",
    "CLOSING": "closing",
    "LISTEN": "listen",
}


@dataclass(frozen=True, **SLOTS)
class TcpSocket:
    """One TCP socket as psutil reports it (`psutil.net_connections(kind="tcp")`)."""

    local_addr: str
    local_port: int
    remote_addr: str | None
    remote_port: int | None
    state: str


@dataclass(frozen=True, **SLOTS)
class PortRange:
    low: int
    high: int
    source: str

    @property
    def size(self) -> int:
        return self.high - self.low + 1


def read_sockets(psutil_mod: Any) -> list[TcpSocket]:
    out = []
    for c in psutil_mod.net_connections(kind="tcp"):
        laddr, raddr = c.laddr, c.raddr
        out.append(
            TcpSocket(
                laddr.ip if laddr else "",
                laddr.port if laddr else 0,
                raddr.ip if raddr else None,
                raddr.port if raddr else None,
                c.status,
            )
        )
    return out


def parse_netsh_dynamicport(text: str) -> tuple[int, int] | None:
    """`netsh int ipv4 show dynamicport tcp` -> (start, count). Labels are localised, so read the numbers:
    the first `label : number` line is the start port, the second the number of ports."""
    numbers = [int(m.group(1)) for m in re.finditer(r"^[^:\n]+:\s*(\d+)\s*$", text, re.M)]
    if len(numbers) < 2 or not 1 <= numbers[0] <= 65535 or not 1 <= numbers[1] <= 65536:
        return None
    return numbers[0], numbers[1]


def read_port_range() -> tuple[PortRange | None, str]:
    """The ephemeral TCP port range of this host, and a note when it cannot be read."""
    if sys.platform == "win32":
        try:
            done = subprocess.run(
                ["netsh", "int", "ipv4", "show", "dynamicport", "tcp"],
                capture_output=True,
                timeout=10,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"netsh failed: {exc}"
        parsed = parse_netsh_dynamicport(done.stdout.decode("utf-8", "replace"))
        if parsed is None:
            return None, "netsh output not understood"
        start, count = parsed
        return PortRange(start, min(65535, start + count - 1), "netsh"), ""
    try:
        text = LINUX_PORT_RANGE.read_text()
    except OSError as exc:
        return None, f"cannot read {LINUX_PORT_RANGE}: {exc.strerror or exc}"
    parts = text.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None, f"{LINUX_PORT_RANGE}: unexpected content {text.strip()!r}"
    return PortRange(int(parts[0]), int(parts[1]), str(LINUX_PORT_RANGE)), ""


def read_time_wait_delay() -> tuple[int | None, str | None]:
    if sys.platform == "win32":
        import winreg

        try:
            with winreg.OpenKey(
                winreg.HKEY_LOCAL_MACHINE, r"SYSTEM\CurrentControlSet\Services\Tcpip\Parameters"
            ) as key:
                value, _ = winreg.QueryValueEx(key, "TcpTimedWaitDelay")
                return int(value), "registry"
        except FileNotFoundError:
            return WINDOWS_TIME_WAIT_DEFAULT, "default"
        except OSError:
            return None, None
    if sys.platform.startswith("linux"):
        return LINUX_TIME_WAIT, "linux-constant"
    return None, None


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


@lru_cache(maxsize=1 << 16)  # a busy table holds 100,000 sockets to a few hundred remote addresses
def _norm_addr(addr: str) -> str:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ip)


def count_states(sockets: Iterable[TcpSocket]) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(_STATE_ATTRS.values(), 0)  # insertion order: established first
    total = 0
    for s in sockets:
        attr = _STATE_ATTRS.get(s.state)
        if attr:
            counts[attr] += 1
        if s.state != "LISTEN":
            total += 1
    return {"total": total, **counts}


def tcp_facts(
    sockets: list[TcpSocket],
    server_addresses: set[str],
    remote_ports: set[int],
    top: int,
    check: str | None,
    source: str = "psutil.net_connections",
    location: str | None = None,
    owners: Mapping[int, str] | None = None,
) -> list[Fact]:
    """`owners` (index in `sockets` -> executable, from `netstat -b`) names each endpoint's busiest process."""
    facts = []
    overall = count_states(sockets)
    facts.append(
        make_fact(
            "host.tcp_states",
            "all",
            PROBE,
            check=check,
            source=source,
            location=location,
            time_wait_ratio=_ratio(overall["time_wait"], overall["total"]),
            **overall,  # type: ignore[arg-type]  # TCP state names: no provenance keyword among them
        )
    )
    by_remote: dict[tuple[str, int], list[TcpSocket]] = defaultdict(list)
    processes: dict[tuple[str, int], Counter[str]] = defaultdict(Counter)
    for i, s in enumerate(sockets):
        if s.remote_addr and s.remote_port:
            key = (_norm_addr(s.remote_addr), s.remote_port)
            by_remote[key].append(s)
            if owners and i in owners:
                processes[key][owners[i]] += 1

    def on_server_leg(key: tuple[str, int]) -> bool:
        return key[0] in server_addresses and (not remote_ports or key[1] in remote_ports)

    ranked = sorted(by_remote, key=lambda k: (-len(by_remote[k]), k))
    chosen = [k for k in ranked if on_server_leg(k)] + [k for k in ranked[:top] if not on_server_leg(k)]
    for key in chosen:
        counts = count_states(by_remote[key])
        endpoint = _endpoint(*key)
        facts.append(
            make_fact(
                "host.tcp_states",
                f"remote:{endpoint}",
                PROBE,
                check=check,
                source=source,
                location=location,
                remote=endpoint,
                process=processes[key].most_common(1)[0][0] if processes.get(key) else None,
                remote_addr=key[0],
                remote_port=key[1],
                leg="server" if on_server_leg(key) else None,
                time_wait_ratio=_ratio(counts["time_wait"], counts["total"]),
                **counts,  # type: ignore[arg-type]  # as above
            )
        )
    return facts


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def port_usage_fact(
    sockets: list[TcpSocket],
    rng: PortRange,
    check: str | None,
    time_wait_delay: tuple[int | None, str | None] | None = None,
    source: str | None = None,
    location: str | None = None,
) -> Fact:
    """`time_wait_delay` (seconds, where from) when known otherwise than from this machine."""
    in_range = [s for s in sockets if rng.low <= s.local_port <= rng.high]
    ports = {s.local_port for s in in_range}
    time_wait = sum(1 for s in in_range if s.state == "TIME_WAIT")
    per_remote = Counter(
        _endpoint(_norm_addr(s.remote_addr), s.remote_port) for s in in_range if s.remote_addr and s.remote_port
    )
    busiest, most = per_remote.most_common(1)[0] if per_remote else (None, 0)
    delay, delay_source = time_wait_delay or read_time_wait_delay()
    return make_fact(
        "host.port_usage",
        "tcp",
        PROBE,
        check=check,
        source=source or rng.source,
        location=location,
        range_low=rng.low,
        range_high=rng.high,
        range_size=rng.size,
        range_source=rng.source,
        in_use=len(ports),
        usage_share=_ratio(len(ports), rng.size),
        time_wait_in_range=time_wait,
        time_wait_share=_ratio(time_wait, rng.size),
        max_per_remote=most,
        max_per_remote_share=_ratio(most, rng.size),
        busiest_remote=busiest,
        time_wait_delay=delay,
        time_wait_delay_source=delay_source,
    )


def process_facts(
    psutil_mod: Any, names: Iterable[str], check: str | None, sockets: list[TcpSocket] | None = None
) -> list[Fact]:
    wanted = {n.lower() for n in names} | {removesuffix(n.lower(), ".exe") for n in names}
    procs = []
    for p in psutil_mod.process_iter(["name", "pid"]):
        name = (p.info.get("name") or "").lower()
        if name in wanted:
            procs.append(p)
    if not procs:
        return []
    errors = (psutil_mod.NoSuchProcess, psutil_mod.AccessDenied, psutil_mod.ZombieProcess)
    for p in procs:
        try:
            p.cpu_percent(None)  # prime the counters, then sample once for all of them
        except errors:
            continue
    time.sleep(0.3)
    facts = []
    for p in procs:
        try:
            with p.oneshot():
                mem = p.memory_info()
                facts.append(
                    make_fact(
                        "host.process",
                        f"process:{p.info['name']}:{p.pid}",
                        PROBE,
                        check=check,
                        source="psutil",
                        name=p.info["name"],
                        pid=p.pid,
                        cpu_percent=round(p.cpu_percent(None), 2),
                        memory_rss=int(mem.rss),
                        memory_percent=round(p.memory_percent(), 3),
                        threads=p.num_threads(),
                        connections=_count_connections(p, errors),
                    )
                )
        except errors:
            continue
    return facts


def _count_connections(p: Any, errors: tuple[type[BaseException], ...]) -> int | None:
    try:
        return len(p.net_connections(kind="tcp") if hasattr(p, "net_connections") else p.connections(kind="tcp"))
    except errors:
        return None


def local_addresses(psutil_mod: Any) -> set[str]:
    out = set()
    for addrs in psutil_mod.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                out.add(_norm_addr(a.address.split("%")[0]))
    return out


@dataclass(frozen=True)
class HostParams(ProbeParams):
    """Parameters of the `host` probe: files exported on the TMG server (`exports`; else this host is
    read, unless `exports_given` or `offline` says its state is not the evidence), TMG's addresses (this
    host must have one), the published servers' addresses and ports that mark the TMG-to-server leg, how
    many other endpoints to report, and the proxy process names."""

    probe = PROBE
    exports: tuple[str, ...] = ()
    exports_given: tuple[str, ...] = ()
    offline: bool = False
    tmg_addresses: tuple[str, ...] = split_field()
    server_addresses: tuple[str, ...] = split_field()
    remote_ports: tuple[str, ...] = split_field()
    top: int = 20
    process_names: tuple[str, ...] = split_field()


def server_leg(params: HostParams) -> tuple[set[str], set[int], int] | ProbeResult:
    """The server addresses and ports that make the TMG-to-server leg, and how many other endpoints to
    report; an `unavailable` result when the ports are not numbers."""
    servers = {_norm_addr(a) for a in params.server_addresses}
    try:
        ports = {int(p) for p in params.remote_ports}
    except ValueError:
        return ProbeResult.unavailable(f"remote_ports must be port numbers, got {list(params.remote_ports)!r}")
    return servers, ports, params.top or 20


def probe(ctx: ProbeContext, spec: HostParams | Mapping[str, Any]) -> ProbeResult:
    params = HostParams.of(spec)
    if params.exports:
        from diagnose.probes.host.exports import probe_exports

        return probe_exports(ctx, params)
    if params.exports_given:
        return ProbeResult.unavailable("host exports given (--host-export): those are read, not this machine")
    if params.offline:
        return ProbeResult.unavailable("offline run: this machine's TCP state is not part of the evidence")
    import psutil

    ctx.progress(ctx.check or PROBE, "reading TCP connections")
    notes: list[str] = []
    tmg = {_norm_addr(a) for a in params.tmg_addresses}
    if tmg:
        local = local_addresses(psutil)
        if not tmg & local:
            return ProbeResult.unavailable(
                f"this host is not the TMG server (none of {', '.join(sorted(tmg))} is a local address), "
                "so its TCP state says nothing about TMG"
            )
    try:
        sockets = read_sockets(psutil)
    except psutil.AccessDenied:
        return ProbeResult.unavailable("not allowed to list TCP connections (run with more privileges)")
    except OSError as exc:
        return ProbeResult.unavailable(f"cannot list TCP connections: {exc}")
    leg = server_leg(params)
    if isinstance(leg, ProbeResult):
        return leg
    servers, ports, top = leg
    facts = tcp_facts(sockets, servers, ports, top, ctx.check)
    if not servers:
        notes.append("no internal server addresses, so the TMG-to-server leg is not marked")
    rng, note = read_port_range()
    if rng is not None:
        facts.append(port_usage_fact(sockets, rng, ctx.check))
    else:
        notes.append(note)
    names = list(params.process_names) or list(DEFAULT_PROCESSES)
    procs = process_facts(psutil, names, ctx.check)
    facts.extend(procs)
    if not procs:
        notes.append(f"proxy process not running here ({', '.join(names)})")
    status = ProbeStatus.PARTIAL if rng is None else ProbeStatus.COMPLETE
    summary = f"{len(sockets)} TCP sockets"
    return ProbeResult(tuple(facts), status, "; ".join([summary, *notes]))
