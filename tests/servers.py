"""Real servers on loopback for the network probe tests (and the guided-session tests that reuse them).

Everything binds to 127.0.0.1 (or, given `host=`, another 127.x address or the IPv6 loopback ::1) on a
free port and runs in daemon threads; use each server as a context manager (or call `close()`):

    with DnsServer({"mail.contoso.com": {"A": ["127.0.0.200"]}}) as dns_server:
        ... dns_server.address  ->  "127.0.0.1:40123" (UDP and TCP on the same port)
    with DnsServer(zone, host="::1") as dns_server:
        ... dns_server.address  ->  "[::1]:40123" (RFC 3986 brackets around an IPv6 host)

    with TlsServer(factory.issue("cas01.contoso.local"), app=owa_app(), host="127.0.0.10") as web:
        ... web.port

    with SilentPeer() as peer: ...        accepts TCP connections and never says a word
    with TricklingServer() as slow: ...   answers an HTTP request one byte at a time, never finishing
    with UnansweredPort() as port: ...    SYNs are never answered (accept queue full): connects time out
    closed_port()                          a port nobody listens on: connects are refused

`requires_ipv6` skips a test where ::1 cannot be bound (a host or container without IPv6); `LOOPBACKS`
parametrizes a test over 127.0.0.1 and ::1 (the IPv6 case skipped there).

Servers record when connections arrive (`arrivals`, time.monotonic()) so tests can prove that a
probe's operations overlap.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import threading
import time
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from tests.certs import Issued

LOOPBACK = "127.0.0.1"
LOOPBACK6 = "::1"


def host_port(host: str, port: int) -> str:
    """HOST:PORT, with an IPv6 host in brackets ([::1]:5353), as a user types a server or a target."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _ipv6_loopback_missing() -> str | None:
    """Why ::1 cannot be used here, or None."""
    if not socket.has_ipv6:
        return "this Python has no IPv6 support"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK6, 0))
    except OSError as exc:
        return f"the IPv6 loopback ::1 cannot be bound here ({exc.strerror or exc})"
    return None


IPV6_MISSING = _ipv6_loopback_missing()
requires_ipv6 = pytest.mark.skipif(IPV6_MISSING is not None, reason=IPV6_MISSING or "")
# parametrize a test or fixture over both loopbacks: `@pytest.mark.parametrize("host", LOOPBACKS)`
LOOPBACKS = [pytest.param(LOOPBACK, id="ipv4"), pytest.param(LOOPBACK6, id="ipv6", marks=requires_ipv6)]


class _Threads:
    """Start/stop bookkeeping shared by the servers."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.arrivals: list[float] = []

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _arrived(self) -> None:
        with self._lock:
            self.arrivals.append(time.monotonic())

    def _accept_loop(self, sock: socket.socket, handle: Callable[[socket.socket], None] | None) -> None:
        """Accept until closed; each connection is recorded, kept open, and handed to `handle` if given."""
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], 0.1)
                if not ready:
                    continue
                conn, _ = sock.accept()
            except OSError:
                return
            self._arrived()
            self._keep(conn)
            if handle is not None:
                self._spawn(handle, conn)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            socks, self._sockets = self._sockets, []
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _loopback_socket(host: str, kind: socket.SocketKind, port: int = 0) -> socket.socket:
    """A socket of `kind` bound to `host`:`port` (0: a free port); `host` must be a loopback address."""
    if not (host.startswith("127.") or host == LOOPBACK6):
        raise ValueError(f"test servers listen on loopback only, not {host}")
    sock = socket.socket(family_of(host), kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _listener(backlog: int = 64, port: int = 0, host: str = LOOPBACK) -> socket.socket:
    sock = _loopback_socket(host, socket.SOCK_STREAM, port)
    sock.listen(backlog)
    return sock


def closed_port(host: str = LOOPBACK) -> int:
    """A loopback port with no listener (connects are refused)."""
    with _loopback_socket(host, socket.SOCK_STREAM) as sock:
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------- DNS

Records = typing.Mapping[str, typing.Mapping[str, Any]]


class DnsServer(_Threads):
    """A small authoritative DNS server (UDP and TCP on one port) built on dnspython.

    `records` maps a name to its record sets: `{"A": ["127.0.0.10"], "AAAA": ["::1"], "CNAME": "x.y"}`.
    A name not listed is NXDOMAIN; a listed name without the asked type is NOERROR with no answer.
    `rcodes` forces an answer code for a name (e.g. {"broken.contoso.com": "SERVFAIL"}), `silent` names
    get no answer at all ("*" = every name), `refuse_all` answers REFUSED to everything, `truncate`
    names get an empty truncated UDP answer (the full one over TCP), and `chase=False` answers a CNAME
    without the target's records (the client must ask again). `queries` records (transport, name, type).
    """

    def __init__(
        self,
        records: Records,
        *,
        rcodes: Mapping[str, str] | None = None,
        silent: Iterable[str] = (),
        refuse_all: bool = False,
        truncate: Iterable[str] = (),
        chase: bool = True,
        ttl: int = 60,
        host: str = LOOPBACK,
    ) -> None:
        super().__init__()
        self.records = {self._key(k): v for k, v in records.items()}
        self.rcodes = {self._key(k): dns.rcode.from_text(v) for k, v in (rcodes or {}).items()}
        self.silent = {self._key(n) if n != "*" else "*" for n in silent}
        self.refuse_all = refuse_all
        self.truncate = {self._key(n) for n in truncate}
        self.chase = chase
        self.ttl = ttl
        self.queries: list[tuple[str, str, str]] = []
        self.host = host
        self.udp, self.tcp = self._bind(host)
        self.port = self.udp.getsockname()[1]
        self.address = host_port(host, self.port)
        self._keep(self.udp)
        self._keep(self.tcp)
        self._spawn(self._serve_udp)
        self._spawn(self._serve_tcp)

    @staticmethod
    def _key(name: str) -> str:
        return name.lower().rstrip(".")

    @staticmethod
    def _bind(host: str) -> tuple[socket.socket, socket.socket]:
        for _ in range(50):
            udp = _loopback_socket(host, socket.SOCK_DGRAM)
            try:
                tcp = _listener(port=udp.getsockname()[1], host=host)
            except OSError:
                udp.close()
                continue
            return udp, tcp
        raise RuntimeError("no free port for UDP and TCP")

    # -- answering
    def answer(self, wire: bytes, transport: str) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        question = query.question[0]
        qname = self._key(question.name.to_text())
        self.queries.append((transport, qname, dns.rdatatype.to_text(question.rdtype)))
        if "*" in self.silent or qname in self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if self.refuse_all:
            response.set_rcode(dns.rcode.REFUSED)
            response.flags &= ~dns.flags.AA
            return response.to_wire()
        if transport == "udp" and qname in self.truncate:
            response.flags |= dns.flags.TC
            return response.to_wire()
        name, seen = qname, set()
        while True:
            if name in self.rcodes:
                response.set_rcode(self.rcodes[name])
                return response.to_wire()
            data = self.records.get(name)
            if data is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
                return response.to_wire()
            cname = data.get("CNAME")
            if cname and question.rdtype != dns.rdatatype.CNAME:
                response.answer.append(dns.rrset.from_text(name + ".", self.ttl, "IN", "CNAME", self._key(cname) + "."))
                name = self._key(cname)
                if name in seen or not self.chase:
                    return response.to_wire()
                seen.add(name)
                continue
            values = data.get(dns.rdatatype.to_text(question.rdtype), [])
            if values:
                response.answer.append(
                    dns.rrset.from_text_list(
                        name + ".", self.ttl, "IN", dns.rdatatype.to_text(question.rdtype), list(values)
                    )
                )
            return response.to_wire()

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.udp], [], [], 0.1)
                if not ready:
                    continue
                wire, peer = self.udp.recvfrom(65535)
            except OSError:
                return
            reply = self.answer(wire, "udp")
            if reply is not None:
                with contextlib.suppress(OSError):
                    self.udp.sendto(reply, peer)

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.tcp], [], [], 0.1)
                if not ready:
                    continue
                conn, _ = self.tcp.accept()
            except OSError:
                return
            self._keep(conn)
            self._spawn(self._tcp_client, conn)

    def _tcp_client(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not self._stop.is_set():
                head = _recv_exact(conn, 2)
                if head is None:
                    return
                wire = _recv_exact(conn, struct.unpack("!H", head)[0])
                if wire is None:
                    return
                reply = self.answer(wire, "tcp")
                if reply is not None:
                    conn.sendall(struct.pack("!H", len(reply)) + reply)


def _recv_exact(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


# --------------------------------------------------------------------------------------- HTTP app


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str | list[str]] = field(default_factory=dict)  # a list repeats the header
    body: bytes = b""
    reset_after: int | None = None  # send this many body bytes, then reset the connection

    def head(self) -> bytes:
        reason = {
            200: "OK",
            302: "Found",
            401: "Unauthorized",
            404: "Not Found",
            500: "Internal Server Error",
            503: "Service Unavailable",
        }.get(self.status, "Status")
        lines = [
            f"HTTP/1.1 {self.status} {reason}",
            "Server: Microsoft-IIS/7.5",
            "Connection: close",
            f"Content-Length: {len(self.body)}",
        ]
        for key, value in self.headers.items():
            lines += [f"{key}: {v}" for v in ([value] if isinstance(value, str) else value)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


HttpApp = typing.Callable[[str, str, typing.Mapping[str, str], bytes], Response]

LOGON_FORM = (
    b"<html><head><title>Outlook Web App</title></head><body>"
    b'<form action="/owa/auth/owaauth.dll" method="POST" name="logonForm">'
    b'<input type="text" id="username" name="username">'
    b'<input type="password" id="password" name="password">'
    b'<input type="submit" value="Sign in"></form></body></html>'
)
_AUTH = {"WWW-Authenticate": ["Negotiate", "NTLM", 'Basic realm="cas01.contoso.local"']}


def owa_app(*, fba_running: bool = True, reset_ews: bool = False) -> HttpApp:
    """Exchange 2010 CAS as seen unauthenticated (causes.md section 4).

    Healthy: /owa/ and /ecp/ redirect to the forms logon page, the page has its form, posting the form
    without credentials comes back to the logon page (reason=2); rpcproxy, ActiveSync, EWS and
    Autodiscover ask for authentication (401). With the Forms-Based Authentication service stopped the
    logon page still renders, but posting it gives a blank page; the other protocols are unaffected.
    """

    def app(method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        host = headers.get("host", "cas")
        bare = path.split("?", 1)[0].lower()
        if bare in ("/owa", "/owa/", "/ecp", "/ecp/"):
            target = f"https://{host}/owa/auth/logon.aspx?url=https://{host}{path}&reason=0"
            return Response(302, {"Location": target}, b"<html>Object moved</html>")
        if bare == "/owa/auth/logon.aspx":
            return Response(200, {"Content-Type": "text/html; charset=utf-8"}, LOGON_FORM)
        if bare == "/owa/auth/owaauth.dll" and method == "POST":
            if not fba_running:
                return Response(200, {"Content-Type": "text/html"}, b"")
            return Response(302, {"Location": f"https://{host}/owa/auth/logon.aspx?reason=2"}, b"")
        if bare in (
            "/rpc/rpcproxy.dll",
            "/microsoft-server-activesync",
            "/ews/exchange.asmx",
            "/autodiscover/autodiscover.xml",
        ):
            if reset_ews and bare == "/ews/exchange.asmx":
                return Response(401, _AUTH, b"x" * 4000, reset_after=100)
            return Response(401, _AUTH, b"<html>401 - Unauthorized</html>")
        return Response(404, {}, b"<html>404 - File or directory not found.</html>")

    return app


# --------------------------------------------------------------------------------------------- TLS


class TlsServer(_Threads):
    """A TLS server on loopback presenting `issued` (leaf + intermediate), optionally serving HTTP.

    `behaviour`: "serve" (handshake, then answer one HTTP request through `app`, or close politely),
    "reset-on-hello" (read the ClientHello, answer with a TCP reset), "close-on-hello" (read it, then
    FIN), "plain-http" (answer in clear text: not TLS at all). `versions` bounds the protocol, e.g.
    (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3) for a server TMG 2010 cannot talk to.
    """

    def __init__(
        self,
        issued: Issued | None,
        *,
        app: HttpApp | None = None,
        behaviour: str = "serve",
        versions: tuple[ssl.TLSVersion, ssl.TLSVersion] | None = None,
        host: str = LOOPBACK,
    ) -> None:
        super().__init__()
        self.app = app
        self.behaviour = behaviour
        self.context: ssl.SSLContext | None = None
        if issued is not None:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(str(issued.chain), str(issued.key))
            if versions:
                self.context.minimum_version, self.context.maximum_version = versions
            self.context.sni_callback = self._sni
        self.server_names: list[str | None] = []  # the SNI of each handshake (None: the client sent none)
        self.host = host
        self.sock = _listener(host=host)
        self._keep(self.sock)
        self.port = self.sock.getsockname()[1]
        self.address = host_port(host, self.port)
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._spawn(self._accept_loop, self.sock, self._handle)

    def _sni(self, _tls: object, server_name: str | None, _context: ssl.SSLContext) -> None:
        with self._lock:
            self.server_names.append(server_name)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            if self.behaviour in ("reset-on-hello", "close-on-hello"):
                conn.recv(4096)
                if self.behaviour == "reset-on-hello":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                return
            if self.behaviour == "plain-http":
                conn.recv(4096)
                conn.sendall(Response(400, {}, b"Bad Request").head() + b"Bad Request")
                conn.close()
                return
            assert self.context is not None
            tls = self.context.wrap_socket(conn, server_side=True)
            self._keep(tls)
            if self.app is None:
                with contextlib.suppress(OSError):
                    tls.recv(1)  # wait for the client to finish (it closes or sends close_notify)
                tls.close()
                return
            self._serve_http(tls)
        except (OSError, ssl.SSLError):
            with contextlib.suppress(OSError):
                conn.close()

    def _serve_http(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _version = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        while len(body) < length:
            chunk = conn.recv(4096)
            if not chunk:
                break
            body += chunk
        self.requests.append((method, path, headers))
        assert self.app is not None
        response = self.app(method, path, headers, body)
        if response.reset_after is not None:
            conn.sendall(response.head() + response.body[: response.reset_after])
            time.sleep(0.05)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return
        conn.sendall(response.head() + response.body)
        conn.close()


# ---------------------------------------------------------------------------------- silent peers


class SilentPeer(_Threads):
    """Accepts TCP connections and never sends a byte (TLS handshakes and HTTP requests time out)."""

    def __init__(self, host: str = LOOPBACK) -> None:
        super().__init__()
        self.sock = _listener(backlog=128, host=host)
        self._keep(self.sock)
        self.port = self.sock.getsockname()[1]
        self.address = host_port(host, self.port)
        self._spawn(self._accept_loop, self.sock, None)


class UnansweredPort(_Threads):
    """A listening socket whose accept queue is full and never drained: new SYNs go unanswered."""

    def __init__(self, host: str = LOOPBACK) -> None:
        super().__init__()
        self.sock = _listener(backlog=0, host=host)
        self._keep(self.sock)
        self.port = self.sock.getsockname()[1]
        self.address = host_port(host, self.port)
        for _ in range(16):
            filler = socket.socket(family_of(host), socket.SOCK_STREAM)
            filler.setblocking(False)
            filler.connect_ex((host, self.port))
            self._keep(filler)
            _, writable, _ = select.select([], [filler], [], 0.1)
            if not writable:
                return  # this SYN was dropped: the queue is full
        raise RuntimeError("could not fill the accept queue")


class TricklingServer(_Threads):
    """A slowloris answer: reads an HTTP request, then sends its answer one byte every `interval` seconds,
    forever (until the client leaves or the server closes). Every read the client makes succeeds in time,
    so only a wall-clock deadline ends the request.

    `stage`: "headers" (the status line, then a header line that never ends) or "body" (complete headers
    with a Content-Length of a gigabyte, then the body). With `issued`, the answer comes over TLS.
    """

    def __init__(
        self, issued: Issued | None = None, *, stage: str = "headers", interval: float = 0.1, host: str = LOOPBACK
    ) -> None:
        super().__init__()
        if stage not in ("headers", "body"):
            raise ValueError(f"stage must be headers or body, not {stage!r}")
        self.stage, self.interval = stage, interval
        self.context: ssl.SSLContext | None = None
        if issued is not None:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(str(issued.chain), str(issued.key))
        self.sock = _listener(host=host)
        self._keep(self.sock)
        self.port = self.sock.getsockname()[1]
        self.address = host_port(host, self.port)
        self.bytes_sent = 0
        self._spawn(self._accept_loop, self.sock, self._handle)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
                self._keep(conn)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            if self.stage == "headers":
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Padding: ")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % 2**30)
            while not self._stop.is_set():
                conn.sendall(b"a")
                with self._lock:
                    self.bytes_sent += 1
                time.sleep(self.interval)
        except (OSError, ssl.SSLError):
            with contextlib.suppress(OSError):
                conn.close()
