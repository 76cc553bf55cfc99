"""The platform's runner CA: its key and certificate, and the certificates it issues.

A runner proves who it is with a client certificate (mTLS) that this CA issued when it
enrolled; the runner in turn pins this CA for the server certificate of the runner endpoint,
so neither side trusts the network in between.

The CA key is ECDSA P-256, not Ed25519: every TLS stack a runner may bring (OpenSSL, Go,
Java, Windows SChannel, HSM-backed clients) verifies P-256 certificate chains, while Ed25519
certificates are still refused by some of them.

The CA key is generated on first start and lives in a 0600 file through
``amosflow.host``; a looser file is refused (VaultError, the error of unsafe key
material), because whoever reads it can mint runner identities. Certificates are short
(30 days by default).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from amosflow.errors import Diagnostic, ValidationFailedError, VaultError
from amosflow.host import exposure, write_private
from amosflow.runner.dispatch._grants import RunnerRefused, aware

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

CA_KEY_FILE = "ca.key"


CA_CERT_FILE = "ca.crt"


CA_VALIDITY = timedelta(days=3650)


#: Certificates start a little in the past, so a runner whose clock lags still accepts them.
BACKDATE = timedelta(minutes=5)


ORGANIZATION = "AMOS FLOW"


MAX_CERT_DAYS = 397


_DNS_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9*]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")


RUNNER_URN = "urn:amosflow:runner:{runner_id}:{zone}"


def pem(cert: x509.Certificate) -> bytes:
    """A certificate in PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _spki(key: Any) -> bytes:
    der: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def serial_hex(cert: x509.Certificate) -> str:
    """A certificate's serial number as the lower-case hex the runner row keeps."""
    return format(cert.serial_number, "x")


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


class PlatformCA:
    """The install's runner CA: a self-signed P-256 certificate and its private key.

    Build it with ``load_or_create``; the constructor takes material already checked.
    """

    def __init__(
        self, certificate: x509.Certificate, private_key: ec.EllipticCurvePrivateKey
    ) -> None:
        if _spki(certificate.public_key()) != _spki(private_key.public_key()):
            raise VaultError("the runner CA certificate does not belong to its private key")
        self.certificate = certificate
        self._key = private_key

    @classmethod
    def load_or_create(cls, directory: Path, *, now: datetime | None = None) -> PlatformCA:
        """Load the CA from ``directory``, creating key and certificate on first start.

        The key file must be readable by its owner only (VaultError otherwise). Both files
        are written with an exclusive link, and always read back from disk, so two
        processes starting at once agree on one key and one certificate.
        """
        at = aware(now) if now is not None else datetime.now(UTC)
        key_path = directory / CA_KEY_FILE
        cert_path = directory / CA_CERT_FILE
        if not key_path.exists():
            write_private(
                key_path, _key_pem(ec.generate_private_key(ec.SECP256R1())), exclusive=True
            )
        problem = exposure(key_path)
        if problem is not None:
            raise VaultError(f"refusing the runner CA key {key_path}: {problem}")
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except ValueError as exc:
            raise VaultError(f"{key_path} is not a PEM private key") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise VaultError(f"{key_path} is not an ECDSA key")
        if not cert_path.exists():
            write_private(cert_path, pem(_self_signed(key, at)), exclusive=True)
        try:
            certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except ValueError as exc:
            raise VaultError(f"{cert_path} is not a PEM certificate") from exc
        return cls(certificate, key)

    @property
    def certificate_pem(self) -> bytes:
        """The CA certificate in PEM, what a runner pins."""
        return pem(self.certificate)

    @property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the CA certificate's DER, for pinning it out of band."""
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return "sha256:" + hashlib.sha256(der).hexdigest()

    def _builder(
        self, subject: x509.Name, public_key: Any, at: datetime, days: int
    ) -> x509.CertificateBuilder:
        ca_ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(at - BACKDATE)
            .not_valid_after(at + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
                critical=False,
            )
        )

    def issue_server_cert(
        self, names: Iterable[str], *, now: datetime | None = None, days: int = MAX_CERT_DAYS
    ) -> tuple[bytes, bytes]:
        """Issue the runner endpoint's certificate for DNS names and IP addresses.

        Returns ``(cert_pem, key_pem)``; the key is fresh P-256 in unencrypted PKCS#8, so the
        caller writes it to a 0600 file. Runners pin the CA, not this certificate, so it can
        be reissued (new names, new key) without touching any runner.
        """
        at = aware(now) if now is not None else datetime.now(UTC)
        wanted = list(dict.fromkeys(names))
        sans = [_general_name(name) for name in wanted]
        if not sans:
            raise ValidationFailedError([Diagnostic("/names", "name at least one host")])
        if not 1 <= days <= MAX_CERT_DAYS:
            raise ValidationFailedError([Diagnostic("/days", f"1 to {MAX_CERT_DAYS} days")])
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                x509.NameAttribute(NameOID.COMMON_NAME, wanted[0][:64]),
            ]
        )
        cert = (
            self._builder(subject, key.public_key(), at, days)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return pem(cert), _key_pem(key)

    def issue_client_cert(
        self,
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        *,
        runner_id: str,
        zone: str,
        now: datetime,
        days: int,
    ) -> x509.Certificate:
        """Issue a runner's client certificate: CN = runner id, SAN URI with id and zone.

        Nothing from the CSR but its public key goes in: the subject, the zone and the
        usages are the platform's to say.
        """
        at = aware(now)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"zone {zone}"),
                x509.NameAttribute(NameOID.COMMON_NAME, runner_id),
            ]
        )
        urn = RUNNER_URN.format(runner_id=runner_id, zone=zone)
        return (
            self._builder(subject, public_key, at, days)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(urn)]), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )

    def verify_issued(self, cert: x509.Certificate, *, now: datetime) -> None:
        """Refuse (RunnerRefused) a certificate this CA did not sign or that is not valid now."""
        at = aware(now)
        try:
            cert.verify_directly_issued_by(self.certificate)
        except (ValueError, TypeError, InvalidSignature):
            raise RunnerRefused("wrong_ca") from None
        for valid in (self.certificate, cert):
            if at < valid.not_valid_before_utc:
                raise RunnerRefused("not_yet_valid")
            if at >= valid.not_valid_after_utc:
                raise RunnerRefused("expired")


def _self_signed(key: ec.EllipticCurvePrivateKey, at: datetime) -> x509.Certificate:
    # A random suffix: two installs' CAs never share a subject, so issuer matching between
    # them cannot mix them up.
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, f"AMOS FLOW runner CA {secrets.token_hex(4)}"),
        ]
    )
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(at - BACKDATE)
        .not_valid_after(at + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    if not _DNS_NAME.fullmatch(name):
        raise ValidationFailedError([Diagnostic("/names", f"{name!r} is not a host name or IP")])
    return x509.DNSName(name)
