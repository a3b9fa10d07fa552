"""The `tls` probe: the certificate the internal server presents to TMG, and whether the handshake works.

With SSL bridging TMG connects to the internal server under the name on the rule's To tab and checks
that the certificate carries that name (causes.md C2), is trusted by the computer store and in date
(C3); a server that resets the handshake or shares no protocol with TMG shows as Status 64 (C4).

The probe connects to each target (port 443 by default) with SNI set to the internal name and makes
the handshake TMG 2010 makes (TLS 1.0 to 1.2), recording the bytes, so it can report the chain *as
sent* and take the certificate without trusting it. If that handshake fails on the protocol, a modern
handshake still fetches the certificate, and the fact says `handshake: protocol-mismatch`. Trust is
checked on a separate connection: against `ca_file` alone when it is given (TMG's own computer store,
exported), else against this machine's system store, which says little about TMG's. The trust check
ignores validity dates (expiry is judged from notAfter), so `trusted` means "chains to a trusted CA".

Parameters (`spec`):
    targets           HOST[:PORT] list (default: internal_name)
    port              default port (443)
    sni               the name to send and to find on the certificate (default: internal_name)
    internal_name     the rule's To name
    published_names   the published names
    certificate_fqdn  the expected certificate name
    ca_file           TMG's trusted CAs (PEM, exported from its computer store): the only roots the
                      trust check uses; the fact says `trust_store: ca-file` and carries the path
    timeout           seconds per target (default 5)

Facts: `tls.certificate`, one per target (subject "host:port").
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from diagnose.errors import InputError
from diagnose.facts import Fact, ProbeStatus, make_fact
from diagnose.probes import ProbeContext, ProbeResult
from diagnose.probes.netio import (
    ConnectFailure,
    Endpoint,
    allow_legacy_tls,
    classify_os_error,
    connect,
    elapsed_ms,
    is_address,
    parse_endpoint,
    run_concurrently,
    split_reachable,
    unverified_client_context,
)
from diagnose.probes.params import ProbeParams, port_field

PROBE = "tls"
DEFAULT_TIMEOUT = 5.0
_PROTOCOL_REASONS = {
    "UNSUPPORTED_PROTOCOL",
    "NO_PROTOCOLS_AVAILABLE",
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "WRONG_SSL_VERSION",
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "NO_SHARED_CIPHER",
    "NO_CIPHERS_AVAILABLE",
    "NO_SUITABLE_SIGNATURE_ALGORITHM",
    "TLSV1_ALERT_INSUFFICIENT_SECURITY",
    "UNSUPPORTED_SSL_VERSION",
    "VERSION_TOO_LOW",
    "VERSION_TOO_HIGH",
    "TLSV13_ALERT_MISSING_EXTENSION",
}


class HandshakeFailure(Exception):
    def __init__(self, handshake: str, detail: str) -> None:
        super().__init__(detail)
        self.handshake = handshake
        self.detail = detail


@dataclass
class Observation:
    """What one target showed."""

    endpoint: Endpoint
    handshake: str = "ok"
    detail: str = ""
    protocol: str | None = None
    cipher: str | None = None
    leaf: x509.Certificate | None = None
    chain: list[x509.Certificate] = field(default_factory=list)
    trusted: bool | None = None
    trust_error: str | None = None
    elapsed_ms: float | None = None


# ------------------------------------------------------------------------------------------ probe


@dataclass(frozen=True)
class TlsParams(ProbeParams):
    """Parameters of the `tls` probe (see the module docstring)."""

    probe = PROBE
    targets: tuple[str, ...] = ()
    port: int = port_field(443)
    sni: str | None = None
    internal_name: str | None = None
    published_names: tuple[str, ...] = ()
    certificate_fqdn: str | None = None
    ca_file: str | None = None
    timeout: float = DEFAULT_TIMEOUT


def probe(ctx: ProbeContext, spec: TlsParams | Mapping[str, Any]) -> ProbeResult:
    params = TlsParams.of(spec)
    port = params.port
    internal_name = params.internal_name
    sni = params.sni or internal_name
    raw_targets = list(params.targets)
    if not raw_targets and internal_name:
        raw_targets = [internal_name]
    if not raw_targets:
        return ProbeResult.unavailable("no server to connect to (give targets, internal_addresses or internal_name)")
    targets, held = split_reachable(list(dict.fromkeys(parse_endpoint(t, port) for t in raw_targets)))
    if not targets:
        return ProbeResult.unavailable(held)
    published = [n.lower().rstrip(".") for n in params.published_names]
    certificate_fqdn = params.certificate_fqdn
    timeout = params.timeout
    ca_file = params.ca_file
    trust = trust_context(ca_file)

    def work(endpoint: Endpoint, budget: float) -> Observation:
        ctx.progress(ctx.check or PROBE, f"TLS handshake with {endpoint}" + (f" as {sni}" if sni else ""))
        return observe(endpoint, sni, budget, trust)

    def expired(endpoint: Endpoint) -> Observation:
        return Observation(endpoint, "timeout", "not tried: the probe's deadline had passed")

    observations = run_concurrently(ctx, targets, work, expired, timeout)
    facts = [
        certificate_fact(o, sni, internal_name, published, certificate_fqdn, ctx.check, ca_file) for o in observations
    ]
    return ProbeResult(tuple(facts), ProbeStatus.PARTIAL if held else ProbeStatus.COMPLETE, held)


# OpenSSL's X509_V_FLAG_NO_CHECK_TIME (not named by the ssl module): validity dates are judged
# from notBefore/notAfter, so that an expired certificate from a trusted CA is not also "untrusted"
NO_CHECK_TIME = 0x200000


def trust_context(ca_file: str | None) -> ssl.SSLContext:
    """The trust check's context: only `ca_file`'s CAs when given (TMG's store), else the system store."""
    # with a CA file, no default roots: TMG's store alone
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT) if ca_file else ssl.create_default_context()
    context.check_hostname = False  # names are judged separately, against every name that matters
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= NO_CHECK_TIME
    allow_legacy_tls(context)
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except FileNotFoundError:
            raise InputError("CA file not found", ca_file) from None
        except (ssl.SSLError, OSError) as exc:
            raise InputError(f"not a PEM certificate file: {exc}", ca_file) from None
    return context


def tmg_context() -> ssl.SSLContext:
    """A client like TMG 2010's: TLS 1.0 to 1.2, any certificate accepted (it is examined afterwards)."""
    return unverified_client_context(ssl.TLSVersion.TLSv1_2)


def modern_context() -> ssl.SSLContext:
    return unverified_client_context()


def observe(endpoint: Endpoint, sni: str | None, budget: float, trust: ssl.SSLContext) -> Observation:
    started = time.monotonic()
    deadline = started + budget
    obs = Observation(endpoint)
    server_hostname = sni if sni and not is_address(sni) else None
    try:
        leaf_der, chain_ders, obs.protocol, obs.cipher = tmg_handshake(endpoint, server_hostname, deadline)
    except ConnectFailure as exc:
        obs.handshake, obs.detail = exc.outcome, exc.detail
        obs.elapsed_ms = elapsed_ms(started)
        return obs
    except HandshakeFailure as exc:
        obs.handshake, obs.detail = exc.handshake, exc.detail
        obs.elapsed_ms = elapsed_ms(started)
        if exc.handshake != "protocol-mismatch":
            return obs
        try:  # the server speaks only what TMG does not: fetch the certificate anyway
            leaf_der, obs.protocol, obs.cipher = plain_handshake(endpoint, server_hostname, deadline, modern_context())
            chain_ders = [leaf_der]
            obs.detail += f"; a {obs.protocol} handshake works"
        except (ConnectFailure, HandshakeFailure):
            return obs
    obs.elapsed_ms = elapsed_ms(started)
    obs.leaf = x509.load_der_x509_certificate(leaf_der)
    obs.chain = [obs.leaf] + [c for c in map(_load, chain_ders[1:]) if c is not None]
    try:
        plain_handshake(endpoint, server_hostname, deadline, trust)
        obs.trusted = True
    except HandshakeFailure as exc:
        if exc.handshake == "untrusted":
            obs.trusted, obs.trust_error = False, exc.detail
    except ConnectFailure:
        pass
    return obs


def _load(der: bytes) -> x509.Certificate | None:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


def tmg_handshake(
    endpoint: Endpoint, server_hostname: str | None, deadline: float
) -> tuple[bytes, list[bytes], str | None, str | None]:
    """A TLS 1.0-1.2 handshake through memory buffers, keeping the server's bytes to read the chain."""
    sock = connect(endpoint, max(0.05, deadline - time.monotonic()))
    received = bytearray()
    try:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = tmg_context().wrap_bio(incoming, outgoing, server_hostname=server_hostname)
        while not _handshake_step(tls, endpoint, received):
            pending = outgoing.read()
            if pending:
                _send(sock, pending, deadline, endpoint)
            chunk = _recv(sock, deadline, endpoint)
            if not chunk:
                raise HandshakeFailure("closed", f"{endpoint} closed the connection during the TLS handshake")
            received += chunk
            incoming.write(chunk)
        pending = outgoing.read()
        if pending:
            _send(sock, pending, deadline, endpoint)
        leaf = tls.getpeercert(binary_form=True)
        if leaf is None:
            raise HandshakeFailure("error", f"{endpoint} sent no certificate")
        chain = certificates_from_handshake(bytes(received)) or [leaf]
        cipher = tls.cipher()
        return leaf, chain, tls.version(), cipher[0] if cipher else None
    finally:
        sock.close()


def _handshake_step(tls: ssl.SSLObject, endpoint: Endpoint, received: bytearray) -> bool:
    """Advance the handshake: True when done, False when it needs the server's next bytes."""
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        return False
    except ssl.SSLError as exc:
        raise _classify_ssl(exc, endpoint, bytes(received)) from None
    return True


def _send(sock: socket.socket, data: bytes, deadline: float, endpoint: Endpoint) -> None:
    sock.settimeout(max(0.05, deadline - time.monotonic()))
    try:
        sock.sendall(data)
    except OSError as exc:
        raise _classify_os(exc, endpoint) from None


def _recv(sock: socket.socket, deadline: float, endpoint: Endpoint) -> bytes:
    left = deadline - time.monotonic()
    if left <= 0:
        raise HandshakeFailure("timeout", f"{endpoint} did not complete the TLS handshake in time")
    sock.settimeout(left)
    try:
        return sock.recv(65536)
    except OSError as exc:
        raise _classify_os(exc, endpoint) from None


def _classify_os(exc: OSError, endpoint: Endpoint) -> HandshakeFailure:
    outcome = classify_os_error(exc)
    if outcome == "timeout":
        return HandshakeFailure("timeout", f"{endpoint} did not complete the TLS handshake in time")
    if outcome == "reset":
        return HandshakeFailure("reset", f"{endpoint} reset the connection during the TLS handshake")
    return HandshakeFailure("error", f"{endpoint}: {exc.strerror or exc}")


def _classify_ssl(exc: ssl.SSLError, endpoint: Endpoint, received: bytes) -> HandshakeFailure:
    reason = getattr(exc, "reason", None) or ""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return HandshakeFailure("untrusted", exc.verify_message or str(exc))
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return HandshakeFailure("closed", f"{endpoint} closed the connection during the TLS handshake")
    if received and received[0] not in (20, 21, 22, 23):
        first = received[:16].decode("latin-1", "replace").split("\r\n", 1)[0]
        return HandshakeFailure("not-tls", f"{endpoint} does not speak TLS (it sent {first!r})")
    if reason in _PROTOCOL_REASONS:
        return HandshakeFailure(
            "protocol-mismatch", f"{endpoint} shares no protocol version or cipher with a TLS 1.0-1.2 client ({reason})"
        )
    return HandshakeFailure("error", f"TLS handshake with {endpoint} failed: {reason or exc}")


def plain_handshake(
    endpoint: Endpoint, server_hostname: str | None, deadline: float, context: ssl.SSLContext
) -> tuple[bytes, str | None, str | None]:
    """A handshake on a socket (used for the trust check and for servers beyond TLS 1.2)."""
    sock = connect(endpoint, max(0.05, deadline - time.monotonic()))
    sock.settimeout(max(0.05, deadline - time.monotonic()))
    try:
        with context.wrap_socket(sock, server_hostname=server_hostname) as tls:
            leaf = tls.getpeercert(binary_form=True)
            cipher = tls.cipher()
            if leaf is None:
                raise HandshakeFailure("error", f"{endpoint} sent no certificate")
            return leaf, tls.version(), cipher[0] if cipher else None
    except ssl.SSLError as exc:
        raise _classify_ssl(exc, endpoint, b"") from None
    except OSError as exc:
        raise _classify_os(exc, endpoint) from None
    finally:
        sock.close()


def certificates_from_handshake(data: bytes) -> list[bytes]:
    """The certificate_list of a TLS 1.0-1.2 Certificate message, from the raw bytes a server sent."""
    handshake = bytearray()
    offset = 0
    while offset + 5 <= len(data):
        content_type, length = data[offset], int.from_bytes(data[offset + 3 : offset + 5], "big")
        payload = data[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if content_type == 20:  # ChangeCipherSpec: what follows is encrypted
            break
        if content_type == 22:
            handshake += payload
    position = 0
    while position + 4 <= len(handshake):
        msg_type, length = handshake[position], int.from_bytes(handshake[position + 1 : position + 4], "big")
        body = bytes(handshake[position + 4 : position + 4 + length])
        position += 4 + length
        if msg_type != 11 or len(body) < 3:
            continue
        certs, inner = [], 3
        total = min(len(body), 3 + int.from_bytes(body[:3], "big"))
        while inner + 3 <= total:
            size = int.from_bytes(body[inner : inner + 3], "big")
            certs.append(body[inner + 3 : inner + 3 + size])
            inner += 3 + size
        return certs
    return []


# ------------------------------------------------------------------------------------------ names


def certificate_names(cert: x509.Certificate) -> tuple[list[str], list[str], str | None]:
    """(SAN DNS names, SAN IP addresses, subject CN)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
        ips = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns_names, ips = [], []
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else None
    return dns_names, ips, cn


def name_on_certificate(name: str, san_dns: Sequence[str], san_ip: Sequence[str], cn: str | None) -> bool:
    """Whether a client connecting to `name` accepts the certificate's names (RFC 6125).

    DNS names in the SAN win; the CN is used only when the SAN has no DNS name. A wildcard stands for
    exactly one whole left-most label. An address matches a SAN IP entry.
    """
    name = name.lower().rstrip(".")
    if is_address(name):
        wanted = ipaddress.ip_address(name.partition("%")[0])  # a zone index is not part of the address
        return any(ipaddress.ip_address(ip) == wanted for ip in san_ip)
    patterns = list(san_dns) if san_dns else ([cn.lower()] if cn else [])
    return any(_pattern_matches(p.rstrip("."), name) for p in patterns)


def _pattern_matches(pattern: str, name: str) -> bool:
    if pattern == name:
        return True
    if pattern.startswith("*.") and "*" not in pattern[2:]:
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:] and rest.count(".") >= 1
    return False


def is_self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


# ------------------------------------------------------------------------------------------ facts


def certificate_fact(
    obs: Observation,
    sni: str | None,
    internal_name: str | None,
    published: Sequence[str],
    certificate_fqdn: str | None,
    check: str | None,
    ca_file: str | None = None,
) -> Fact:
    subject = str(obs.endpoint)
    base: dict[str, Any] = {
        "host": obs.endpoint.host,
        "port": obs.endpoint.port,
        "sni": sni,
        "handshake": obs.handshake,
        "detail": obs.detail or None,
        "elapsed_ms": obs.elapsed_ms,
        "protocol": obs.protocol,
        "cipher": obs.cipher,
        "trust_store": "ca-file" if ca_file else "system",
        "ca_file": ca_file or None,
    }
    cert = obs.leaf
    if cert is None:
        return make_fact("tls.certificate", subject, PROBE, check=check, source=subject, **base)
    san_dns, san_ip, cn = certificate_names(cert)
    now = dt.datetime.now(dt.timezone.utc)
    not_after, not_before = cert.not_valid_after_utc, cert.not_valid_before_utc
    wanted = [n for n in [internal_name, *published, certificate_fqdn] if n]
    unmatched = [n for n in dict.fromkeys(wanted) if not name_on_certificate(n, san_dns, san_ip, cn)]
    return make_fact(
        "tls.certificate",
        subject,
        PROBE,
        check=check,
        source=subject,
        **base,
        subject_cn=cn,
        san_dns=san_dns,
        san_ip=san_ip or None,
        issuer=cert.issuer.rfc4514_string(),
        not_before=not_before.strftime("%Y-%m-%dT%H:%M:%SZ"),
        not_after=not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        days_to_expiry=int((not_after - now).total_seconds() // 86400),
        expired=not_after < now,
        not_yet_valid=not_before > now,
        self_signed=is_self_signed(cert),
        trusted=obs.trusted,
        trust_error=obs.trust_error,
        chain_length=len(obs.chain),
        chain_subjects=[c.subject.rfc4514_string() for c in obs.chain],
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        name_matches_internal=name_on_certificate(internal_name, san_dns, san_ip, cn) if internal_name else None,
        name_matches_published=(
            all(name_on_certificate(n, san_dns, san_ip, cn) for n in published) if published else None
        ),
        name_matches_certificate_fqdn=(
            name_on_certificate(certificate_fqdn, san_dns, san_ip, cn) if certificate_fqdn else None
        ),
        unmatched_names=unmatched,
    )
