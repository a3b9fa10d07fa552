"""The `http` probe: request the published Exchange endpoints from the TMG host, and judge each answer.

Unauthenticated requests are cheap and tell a lot (causes.md section 4): a healthy Exchange 2010 CAS
redirects /owa/ to the forms logon page, serves the page with its form, answers a posted (empty) logon
form with a redirect back to the page, and asks for authentication (401) on rpcproxy, ActiveSync, EWS
and Autodiscover. With the Forms-Based Authentication service stopped the logon page still renders
but posting it gives a blank page, while the other protocols are unaffected.

Like TMG, the probe connects to the internal server's address and sends the internal name as Host
header (with the port when it is not the scheme's default, RFC 7230 5.4) and SNI (TMG replaces the
Host header with the To name unless "forward the original host header" is set; give `host_header` to
imitate that). Certificates are not checked here: that is the `tls` probe's job.

Parameters (`spec`), either the catalogue form:
    server            the internal name
    addresses         addresses to connect to (default: server)
    published         protocols to request (default: all)
    exchange_version  picks the version's endpoints (the logon form target) and whether healthcheck.htm exists;
                      the table is checks/exchange-endpoints.yaml (diagnose/exchange.py reads it)
    port, scheme      443, https
    host_header       the name to send as Host header and SNI (default: server; without a name, each
                      address stands for itself: `Host: [fd00::11]:8443`, no SNI)
    healthcheck       request /<vdir>/healthcheck.htm (default: on for Exchange 2013 and later)
or the URL form:
    urls              full URLs; each path is judged by the table when it knows it
    connect           an address to connect to instead of the URL's host
and for both:
    timeout           seconds per request (default 5)

Facts: `http.endpoint`, one per request (subject = URL).
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from diagnose.errors import UsageError
from diagnose.exchange import Expectation, catalogue
from diagnose.facts import Fact, ProbeStatus, make_fact
from diagnose.probes import ProbeContext, ProbeResult
from diagnose.probes.netio import (
    ConnectFailure,
    DeadlineSocket,
    Endpoint,
    authority,
    classify_os_error,
    connect,
    elapsed_ms,
    endpoint,
    is_address,
    parse_endpoint,
    run_concurrently,
    split_reachable,
    unverified_client_context,
)
from diagnose.probes.params import ProbeParams, port_field

PROBE = "http"
DEFAULT_TIMEOUT = 5.0
BODY_LIMIT = 256 * 1024
USER_AGENT = "diagnose/0.1 (TMG publishing check)"
DEFAULT_PORTS = {"https": 443, "http": 80}
_FORM = re.compile(rb"<form\b", re.IGNORECASE)
_PASSWORD = re.compile(rb"type\s*=\s*[\"']?password", re.IGNORECASE)


# ------------------------------------------------------------------------------------------ probe


@dataclass(frozen=True)
class Request:
    url: str
    endpoint: Endpoint  # where the probe connects
    scheme: str
    host: str  # the name (or address) asked for: the Host header's host, and the SNI when it is a name
    port: int  # the port of the URL
    path: str
    expectation: Expectation | None
    method: str = "GET"

    @property
    def host_header(self) -> str:
        """The URL's authority (RFC 7230 5.4): `cas01.contoso.local`, `[fd00::11]:8443`, `10.1.5.11:8080`."""
        return authority(self.host, self.port, DEFAULT_PORTS[self.scheme])


@dataclass(frozen=True)
class HttpParams(ProbeParams):
    """Parameters of the `http` probe (see the module docstring)."""

    probe = PROBE
    server: str | None = None
    addresses: tuple[str, ...] = ()
    published: tuple[str, ...] = ()
    exchange_version: str | None = None
    port: int | None = port_field(None)
    scheme: str | None = None
    host_header: str | None = None
    healthcheck: bool | None = None
    urls: tuple[str, ...] = ()
    connect: str | None = None
    timeout: float = DEFAULT_TIMEOUT


def probe(ctx: ProbeContext, spec: HttpParams | Mapping[str, Any]) -> ProbeResult:
    params = HttpParams.of(spec)
    timeout = params.timeout
    requests = _url_requests(params) if params.urls else _catalogue_requests(params)
    if not requests:
        return ProbeResult.unavailable("nothing to request (give urls, or server and published protocols)")
    allowed, held = split_reachable(list(dict.fromkeys(r.endpoint for r in requests)))
    requests = [r for r in requests if r.endpoint in allowed]
    if not requests:
        return ProbeResult.unavailable(held)

    def work(request: Request, budget: float) -> Fact:
        ctx.progress(ctx.check or PROBE, f"{request.method} {request.url}")
        return fetch(request, budget, ctx.check)

    def expired(request: Request) -> Fact:
        return _fact(
            request,
            ctx.check,
            outcome="timeout",
            healthy=False,
            reason="not requested: the probe's deadline had passed",
        )

    facts = tuple(run_concurrently(ctx, requests, work, expired, timeout))
    return ProbeResult(facts, ProbeStatus.PARTIAL if held else ProbeStatus.COMPLETE, held)


def _catalogue_requests(params: HttpParams) -> list[Request]:
    server = params.server
    addresses = list(params.addresses)
    if not server and not addresses:
        return []
    table = catalogue()
    published = list(params.published) or list(table.protocol_names)
    for p in published:
        if p not in table.protocol_names:
            raise UsageError(f"published: unknown protocol {p!r} (one of {', '.join(table.protocol_names)})")
    version = params.exchange_version
    healthcheck = params.healthcheck if params.healthcheck is not None else table.healthcheck_default(version)
    scheme = (params.scheme or "https").lower()
    if scheme not in ("http", "https"):
        raise UsageError(f"scheme must be http or https, not {scheme!r}")
    port = params.port or DEFAULT_PORTS[scheme]
    targets = [parse_endpoint(a, port) for a in addresses] or [endpoint(server or "", port)]
    named = params.host_header or server
    asked = parse_endpoint(named, port) if named else None  # else each address is asked for by itself
    requests = []
    for target in targets:
        host, url_port = (asked.host, asked.port) if asked else (target.host, target.port)
        url = f"{scheme}://{authority(host, url_port, DEFAULT_PORTS[scheme])}"
        requests += [
            Request(url + exp.path, target, scheme, host, url_port, exp.path, exp, exp.method)
            for exp in table.endpoints_for(published, version, healthcheck)
        ]
    return requests


def _url_requests(params: HttpParams) -> list[Request]:
    connect_to = params.connect
    requests = []
    for url in params.urls:
        try:
            parts = urlsplit(url)
            port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
        except ValueError as exc:  # a bad port, or an unbalanced or invalid [IPv6] host
            hint = "; an IPv6 address goes in brackets: https://[fd00::11]:443/" if "[" not in url else ""
            raise UsageError(f"{url!r}: not a valid URL ({exc}){hint}") from None
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise UsageError(f"{url!r}: give an http:// or https:// URL with a host")
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        asked = endpoint(unquote(parts.hostname), port)  # an IPv6 zone is written %25 in a URL (RFC 6874)
        target = parse_endpoint(connect_to, port) if connect_to else asked
        exp = catalogue().known(path)
        requests.append(Request(url, target, parts.scheme, asked.host, port, path, exp))
    return requests


# ------------------------------------------------------------------------------------------ fetch


def fetch(request: Request, budget: float, check: str | None) -> Fact:
    started = time.monotonic()
    deadline = started + budget
    try:
        sock = connect(request.endpoint, budget)
    except ConnectFailure as exc:
        return _fact(
            request,
            check,
            outcome=exc.outcome if exc.outcome in ("refused", "timeout") else "error",
            healthy=False,
            reason=exc.detail,
            elapsed_ms=elapsed_ms(started),
        )
    try:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        if request.scheme == "https":
            context = unverified_client_context()
            sni = None if is_address(request.host) else request.host  # no literal in SNI (RFC 6066 3)
            try:
                sock = context.wrap_socket(sock, server_hostname=sni)
            except ssl.SSLError as exc:
                return _fact(
                    request,
                    check,
                    outcome="tls-error",
                    healthy=False,
                    reason=f"TLS handshake failed: {getattr(exc, 'reason', None) or exc}",
                    elapsed_ms=elapsed_ms(started),
                )
        body_out = b""
        headers = [
            ("Host", request.host_header),
            ("User-Agent", USER_AGENT),
            ("Accept", "*/*"),
            ("Connection", "close"),
        ]
        if request.method == "POST":
            destination = f"{request.scheme}://{request.host_header}/owa/"
            body_out = urlencode(
                {
                    "destination": destination,
                    "flags": "0",
                    "forcedownlevel": "0",
                    "trusted": "0",
                    "username": "",
                    "password": "",
                    "isUtf8": "1",
                }
            ).encode()
            headers += [("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", str(len(body_out)))]
        head = f"{request.method} {request.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
        sock.sendall(head.encode("latin-1") + b"\r\n" + body_out)
        # one wall-clock budget for the whole answer: a server trickling bytes must not hold the probe
        response = http.client.HTTPResponse(DeadlineSocket(sock, deadline), method=request.method)  # type: ignore[arg-type]
        response.begin()
        status = response.status
        body = b""
        try:
            while len(body) < BODY_LIMIT and (chunk := response.read(min(65536, BODY_LIMIT - len(body)))):
                body += chunk
            if response.length and len(body) < BODY_LIMIT:  # the connection ended before Content-Length
                raise http.client.IncompleteRead(b"", response.length)
        except (http.client.IncompleteRead, ConnectionResetError) as exc:
            if isinstance(exc, http.client.IncompleteRead):
                body += exc.partial
            return _fact(
                request,
                check,
                status=status,
                outcome="reset",
                healthy=False,
                reason=f"the connection was reset in mid-response after {len(body)} body bytes",
                location=response.getheader("Location"),
                auth_schemes=_schemes(response),
                server=response.getheader("Server"),
                elapsed_ms=elapsed_ms(started),
            )
    except (TimeoutError, socket.timeout):  # one class from Python 3.10; two before (the TMG host's 3.8)
        return _fact(
            request,
            check,
            outcome="timeout",
            healthy=False,
            reason="no complete answer in time",
            elapsed_ms=elapsed_ms(started),
        )
    except (http.client.HTTPException, ssl.SSLError) as exc:
        reason = (
            "the server closed the connection without answering"
            if isinstance(exc, http.client.RemoteDisconnected)
            else f"not a valid HTTP answer: {exc}"
        )
        return _fact(
            request,
            check,
            outcome="reset" if isinstance(exc, http.client.RemoteDisconnected) else "error",
            healthy=False,
            reason=reason,
            elapsed_ms=elapsed_ms(started),
        )
    except OSError as exc:
        outcome = classify_os_error(exc)
        return _fact(
            request,
            check,
            outcome=outcome if outcome in ("reset", "timeout", "refused") else "error",
            healthy=False,
            reason=f"{exc.strerror or exc}",
            elapsed_ms=elapsed_ms(started),
        )
    finally:
        sock.close()
    outcome, healthy, reason = judge(
        request.expectation, status, response.getheader("Location"), _schemes(response), body
    )
    return _fact(
        request,
        check,
        status=status,
        outcome=outcome,
        healthy=healthy,
        reason=reason,
        location=response.getheader("Location"),
        auth_schemes=_schemes(response),
        body_bytes=len(body),
        server=response.getheader("Server"),
        elapsed_ms=elapsed_ms(started),
    )


def _schemes(response: http.client.HTTPResponse) -> list[str]:
    return [v.split()[0] for v in response.headers.get_all("WWW-Authenticate") or [] if v.strip()]


def judge(
    exp: Expectation | None, status: int, location: str | None, schemes: Sequence[str], body: bytes
) -> tuple[str, bool, str]:
    """(outcome, healthy, reason) for one answer, against the endpoint's healthy answer."""
    blank = not body.strip()
    if exp is None:
        healthy = status < 400 or status == 401
        return ("ok" if healthy else "unexpected", healthy, f"HTTP {status}")
    if status not in exp.statuses:
        if status == 404:
            return "absent", False, exp.absent_reason or f"{exp.path} is not found on the server"
        if status == 400:
            return "unexpected", False, "400 Bad Request: the server may not accept the Host header TMG sends"
        if status == 200 and blank:
            return "blank", False, exp.blank_reason or "a blank page"
        return "unexpected", False, f"HTTP {status}, expected {exp.expected}"
    if status in (301, 302, 303, 307, 308) and exp.redirect_to:
        target = urlsplit(location or "").path.lower()
        if not target.startswith(exp.redirect_to.lower()):
            return "unexpected", False, f"redirects to {location or 'nowhere'}, expected {exp.redirect_to}"
    if status == 401 and not schemes:
        return "unexpected", False, "401 without a WWW-Authenticate header"
    if status == 200 and blank and not exp.empty_ok:
        return "blank", False, f"{exp.path} answers 200 with a blank page"
    if status == 200 and exp.form and not (_FORM.search(body) and _PASSWORD.search(body)):
        return "no-form", False, "the logon page has no logon form"
    return "ok", True, f"HTTP {status}" + (f" ({', '.join(schemes)})" if status == 401 else "")


def _fact(request: Request, check: str | None, location: str | None = None, **attrs: Any) -> Fact:
    exp = request.expectation
    fact = make_fact(
        "http.endpoint",
        request.url,
        PROBE,
        check=check,
        source=str(request.endpoint),
        url=request.url,
        path=request.path,
        method=request.method,
        address=request.endpoint.host,
        protocol=exp.protocol if exp else None,
        expected=exp.expected if exp else "any answer but an error",
        **attrs,
    )
    if location is None:
        return fact
    # `location` (the redirect target) is an attribute here, not make_fact's provenance location
    return Fact(fact.kind, fact.subject, {**fact.attrs, "location": location}, fact.provenance)
