"""Shared plumbing of the network probes (dns, tls, http, tcp): endpoints, spec parameters, concurrency.

Every network operation has its own timeout, and the operations of one probe run side by side in a
thread pool, so probing twenty targets of which ten never answer takes one timeout, not ten. The
probe's deadline (`ctx.deadline`) caps every timeout; work still queued when it passes is reported as
timed out rather than started late.
"""

from __future__ import annotations

import errno
import io
import ipaddress
import os
import socket
import ssl
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from diagnose.compat import SLOTS
from diagnose.errors import UsageError
from diagnose.probes import ProbeContext
from diagnose.probes.spec import spec_bool, spec_list, spec_number, spec_port, spec_text  # noqa: F401 - re-exported

T = TypeVar("T")
R = TypeVar("R")

MAX_WORKERS = 64


@dataclass(frozen=True, **SLOTS)
class Endpoint:
    """A host (name or address) and a port, e.g. from `10.1.5.11:443`, `[fe80::1]:443` or `cas01`."""

    host: str
    port: int

    def __str__(self) -> str:
        return authority(self.host, self.port)


def authority(host: str, port: int, default_port: int | None = None) -> str:
    """HOST:PORT as a URL and a Host header write it (RFC 3986 3.2.2, RFC 7230 5.4): an IPv6 address in
    brackets (`[::1]:8443`), and no port when it is the scheme's `default_port`."""
    shown = f"[{host}]" if ":" in host else host
    return shown if port == default_port else f"{shown}:{port}"


def endpoint(host: str, port: int) -> Endpoint:
    """An Endpoint with its host written one way: an address canonical, a name in lower case without the
    final dot."""
    return Endpoint(canonical_address(host) if is_address(host) else host.lower().rstrip("."), port)


def parse_endpoint(text: str, default_port: int) -> Endpoint:
    """Parse `HOST`, `HOST:PORT`, `[V6]:PORT`, `[V6]` or a bare IPv6 address; raise UsageError when malformed.

    An address is kept in its canonical form (`0:0::1` -> `::1`), so that a server or target is named
    the same way however it was typed, in facts as in recorded answers. A bare IPv6 address cannot carry
    a port (`::1:53` is itself an address): with a port it goes in brackets, `[::1]:53` (RFC 3986).
    """
    text = text.strip()
    if not text:
        raise UsageError("empty address")
    host, port_text = text, ""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise UsageError(f"{text!r}: missing ']' after an IPv6 address")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"{text!r}: expected ':PORT' after ']'")
            port_text = rest[1:]
        if host and not (":" in host and is_address(host)):
            raise UsageError(f"{text!r}: only an IPv6 address goes in brackets")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text and not is_address(text):
        head, _, tail = text.rpartition(":")
        hint = f"; with a port, write [{head}]:{tail}" if is_address(head) and tail.isdigit() else ""
        raise UsageError(f"{text!r} is not an IPv6 address{hint}")
    if not host:
        raise UsageError(f"{text!r}: no host")
    port = default_port
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"{text!r}: port must be a number from 1 to 65535")
        port = int(port_text)
    return endpoint(host, port)


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def canonical_address(text: str) -> str:
    """The canonical text of an IP address, a zone index kept: RFC 5952 for IPv6 (`0:0::1` -> `::1`), with
    an IPv4-mapped address in its dotted form (`::ffff:7f00:1` -> `::ffff:127.0.0.1`, section 5), as
    Python 3.13 and dnspython write it (3.11 and 3.12 would not)."""
    text, percent, zone = text.partition("%")
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}{percent}{zone}"
    return f"{address}{percent}{zone}"


# ------------------------------------------------------------------------------------ loopback guard

NETWORK_ENV = "DIAGNOSE_NETWORK"


def loopback_only() -> bool:
    """True when `DIAGNOSE_NETWORK=loopback`: probes may reach this host's loopback only (tests set it)."""
    return os.environ.get(NETWORK_ENV, "").strip().lower() == "loopback"


def reachable(host: str) -> bool:
    """Whether the guard lets a probe send traffic to `host` (names would need a resolver: not allowed)."""
    if not loopback_only():
        return True
    if not is_address(host):
        return host.lower() == "localhost"
    return is_loopback(host)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, and 127.x written as an IPv4-mapped IPv6 address (::ffff:127.0.0.1), which an
    IPv6 socket sends to IPv4 loopback. Nothing else: not the unspecified address (::, 0.0.0.0), not
    link-local or site addresses of this host, not the IPv4-compatible ::127.0.0.1 (not loopback)."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def split_reachable(endpoints: Sequence[Endpoint]) -> tuple[list[Endpoint], str]:
    """(the endpoints the guard allows, a note naming those it holds back)."""
    allowed = [e for e in endpoints if reachable(e.host)]
    held = [str(e) for e in endpoints if not reachable(e.host)]
    note = f"not probed ({NETWORK_ENV}=loopback): {', '.join(held)}" if held else ""
    return allowed, note


# ------------------------------------------------------------------------------------ concurrency


def run_concurrently(
    ctx: ProbeContext, items: Sequence[T], work: Callable[[T, float], R], on_expired: Callable[[T], R], timeout: float
) -> list[R]:
    """Run `work(item, timeout)` for every item side by side; results come back in the items' order.

    Each call gets the per-operation `timeout`, shortened to what is left of the probe's deadline. An
    item whose turn comes after the deadline is not started: `on_expired(item)` stands for it.
    """
    if not items:
        return []

    def guarded(item: T) -> R:
        left = ctx.remaining(timeout)
        if ctx.deadline is not None and ctx.deadline - time.monotonic() <= 0:
            return on_expired(item)
        return work(item, left)

    if len(items) == 1:
        return [guarded(items[0])]
    with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(items)), thread_name_prefix="probe") as pool:
        return list(pool.map(guarded, items))


def unique(values: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


# ------------------------------------------------------------------------------------ TCP


class ConnectFailure(Exception):
    """A TCP connect that failed in one of the classified ways."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN, errno.EADDRNOTAVAIL}


def classify_os_error(exc: OSError) -> str:
    """refused | reset | timeout | unreachable | error, for a socket error."""
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return "reset"
    if isinstance(exc, socket.gaierror):
        return "unresolved"
    if exc.errno in _UNREACHABLE:
        return "unreachable"
    return "error"


def connect(endpoint: Endpoint, timeout: float) -> socket.socket:
    """Open a TCP connection (the first address that accepts), raising ConnectFailure with its class."""
    try:
        infos = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectFailure("unresolved", f"{endpoint.host} does not resolve here: {exc.strerror}") from None
    failure: ConnectFailure | None = None
    started = time.monotonic()
    for family, kind, proto, _name, address in infos:
        left = timeout - (time.monotonic() - started)
        if left <= 0:
            break
        sock = socket.socket(family, kind, proto)
        sock.settimeout(left)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            outcome = classify_os_error(exc)
            detail = f"connect to {endpoint}: " + ("timed out" if outcome == "timeout" else exc.strerror or str(exc))
            failure = ConnectFailure(outcome, detail)
            continue
        return sock
    raise failure or ConnectFailure("timeout", f"connect to {endpoint}: timed out")


class DeadlineReader(io.RawIOBase):
    """A socket's incoming bytes, every read bounded by what is left of `deadline` (time.monotonic()).

    A socket timeout bounds each read alone: a server that sends one byte a second (slowloris) keeps
    every read inside it and the request going for ever. Here the reads share one wall-clock budget, and
    the first read after it is spent raises TimeoutError.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline passed")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class DeadlineSocket:
    """What http.client.HTTPResponse reads from (it only calls `makefile`): the socket through a
    DeadlineReader, so that the status line, headers and body all arrive by the deadline or not at all."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str = "rb", *_args: Any, **_kwargs: Any) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError(f"DeadlineSocket reads bytes only, not mode {mode!r}")
        return io.BufferedReader(DeadlineReader(self._sock, self._deadline))


def elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


# ------------------------------------------------------------------------------------ TLS


def allow_legacy_tls(context: ssl.SSLContext) -> None:
    """Let OpenSSL speak what a 2010-era server speaks (TLS 1.0 and 1.1, old ciphers), as TMG 2010 does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0 is deprecated, and that is the point
        context.minimum_version = ssl.TLSVersion.TLSv1
    try:
        context.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:  # pragma: no cover - an OpenSSL without security levels
        context.set_ciphers("ALL")


def unverified_client_context(max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client context that accepts any certificate (it is examined, or ignored, afterwards)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    allow_legacy_tls(context)
    if max_version is not None:
        context.maximum_version = max_version
    return context
