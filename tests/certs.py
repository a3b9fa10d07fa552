"""Certificates made on the spot with `cryptography`, for the loopback TLS servers of the tests.

    factory = CertFactory(tmp_path)
    good = factory.issue("cas01.contoso.local", san=["cas01.contoso.local", "mail.contoso.com"])
    expired = factory.issue("cas01.contoso.local", days=(-30, -1))
    selfsigned = factory.issue("cas01.contoso.local", self_signed=True)

Every certificate is written as PEM (`cert`, `key`, and `chain` = leaf plus the intermediate the server
should send); `factory.root_pem` is the root for a client that wants to trust the chain.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    cert: Path
    key: Path
    chain: Path


@dataclass(frozen=True)
class _Authority:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Contoso Test"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class CertFactory:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.now = dt.datetime.now(dt.timezone.utc)
        self.root = self._authority("Contoso Test Root CA", None)
        self.intermediate = self._authority("Contoso Test Issuing CA", self.root)
        self.root_pem = self.directory / "root.pem"
        self.root_pem.write_bytes(_pem(self.root.certificate))
        self._count = 0

    def _authority(self, cn: str, parent: _Authority | None) -> _Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        issuer_name = parent.certificate.subject if parent else _name(cn)
        signer = parent.key if parent else key
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - dt.timedelta(days=365))
            .not_valid_after(self.now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(signer, hashes.SHA256())
        )
        return _Authority(cert, key)

    def issue(
        self,
        cn: str,
        san: Sequence[str] = (),
        *,
        days: tuple[int, int] = (-1, 365),
        self_signed: bool = False,
        san_ips: Sequence[str] = (),
    ) -> Issued:
        """A server certificate for `cn` (+ SAN DNS names), valid from now+days[0] to now+days[1]."""
        self._count += 1
        key = ec.generate_private_key(ec.SECP256R1())
        issuer = None if self_signed else self.intermediate
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn) if issuer is None else issuer.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now + dt.timedelta(days=days[0]))
            .not_valid_after(self.now + dt.timedelta(days=days[1]))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
        alt: list[x509.GeneralName] = [x509.DNSName(n) for n in san]
        alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in san_ips]
        if alt:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        if issuer is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
            )
        cert = builder.sign(key if issuer is None else issuer.key, hashes.SHA256())
        stem = self.directory / f"server{self._count}"
        cert_path, key_path, chain_path = (stem.with_suffix(s) for s in (".crt", ".key", ".chain.pem"))
        cert_path.write_bytes(_pem(cert))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        chain_path.write_bytes(_pem(cert) + (b"" if issuer is None else _pem(issuer.certificate)))
        return Issued(cert, cert_path, key_path, chain_path)
