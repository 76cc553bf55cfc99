"""The platform's runner CA: one-time enrollment tokens, client certificates, their checks.

A runner proves who it is with a client certificate (mTLS) that the platform CA issued when
it enrolled with a one-time token; the runner in turn pins that CA for the server
certificate of the runner endpoint, so neither side trusts the network in between.

The CA key is ECDSA P-256, not Ed25519: every TLS stack a runner may bring (OpenSSL, Go,
Java, Windows SChannel, HSM-backed clients) verifies P-256 certificate chains, while Ed25519
certificates are still refused by some of them. Runner keys may be P-256, P-384 or RSA of
3072 bits or more for the same reason.

The CA key is generated on first start and lives in a 0600 file through
``amosflow.host``; a looser file is refused (VaultError, the error of unsafe key
material), because whoever reads it can mint runner identities. Certificates are short
(30 days by default) and revocation needs no CRL: ``verify_client_cert`` reads the runner's
row on every check, so a revoked runner is refused at once.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select, update

from amosflow import audit
from amosflow.errors import Diagnostic, ValidationFailedError, VaultError
from amosflow.host import exposure, write_private
from amosflow.runners.leases import (
    RunnerRefused,
    register_runner,
    validate_capabilities,
    validate_zone,
)
from amosflow.store.tables import INSTALL_FOLDER, EnrollmentTokenRow, RunnerRow

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from sqlalchemy.orm import Session

CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.crt"
CA_VALIDITY = timedelta(days=3650)
#: Certificates start a little in the past, so a runner whose clock lags still accepts them.
BACKDATE = timedelta(minutes=5)
ORGANIZATION = "AMOS FLOW"
TOKEN_PREFIX = "amos_enr_"  # noqa: S105 - a prefix, not a secret
#: ``amos_enr_`` + 16 hex digits (the token's id) + ``_`` + URL-safe base64 of 32 random bytes.
_TOKEN_SHAPE = re.compile(r"amos_enr_([0-9a-f]{16})_[A-Za-z0-9_-]{43}")
MAX_TOKEN_TTL = timedelta(days=30)
MAX_CERT_DAYS = 397
MIN_RSA_BITS = 3072
_CURVES = (ec.SECP256R1, ec.SECP384R1)
_DNS_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9*]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")
RUNNER_URN = "urn:amosflow:runner:{runner_id}:{zone}"

RunnerKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("pass a timezone-aware datetime")
    return now.astimezone(UTC)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    """A private key as unencrypted PKCS#8 PEM, for a 0600 file."""
    return _key_pem(key)


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
        at = _aware(now) if now is not None else datetime.now(UTC)
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
            write_private(cert_path, _pem(_self_signed(key, at)), exclusive=True)
        try:
            certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except ValueError as exc:
            raise VaultError(f"{cert_path} is not a PEM certificate") from exc
        return cls(certificate, key)

    @property
    def certificate_pem(self) -> bytes:
        """The CA certificate in PEM, what a runner pins."""
        return _pem(self.certificate)

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
        at = _aware(now) if now is not None else datetime.now(UTC)
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
        return _pem(cert), _key_pem(key)

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
        at = _aware(now)
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
        at = _aware(now)
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


# --- the runner's side ---------------------------------------------------------------------


def generate_runner_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key for a runner; it never leaves the runner, only its CSR does."""
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(private_key: RunnerKey, name: str) -> bytes:
    """A PEM certificate signing request for ``private_key``, signed by it (proof of possession).

    ``name`` goes in the subject for the operator's eyes; the CA replaces the subject anyway.
    """
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])]))
        .sign(private_key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def _csr_public_key(csr_pem: bytes | str) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The CSR's public key, once its signature proves the sender holds the private key."""
    data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
    try:
        csr = x509.load_pem_x509_csr(data)
        signed = csr.is_signature_valid
        key = csr.public_key()
    except (ValueError, TypeError):
        raise ValidationFailedError([Diagnostic("/csr", "not a PEM certificate request")]) from None
    if not signed:
        raise ValidationFailedError(
            [Diagnostic("/csr", "the request's signature does not match its key")]
        )
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _CURVES):
        return key
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_BITS:
        return key
    raise ValidationFailedError(
        [
            Diagnostic(
                "/csr", f"the key must be ECDSA P-256 or P-384, or RSA of {MIN_RSA_BITS}+ bits"
            )
        ]
    )


# --- enrollment ----------------------------------------------------------------------------


def token_hash(token: str) -> str:
    """The SHA-256 (hex) under which an enrollment token is kept and looked up.

    The token carries 256 random bits, so a plain hash cannot be guessed back from a copy
    of the database, and the unique-index lookup leaks nothing a caller can steer.
    """
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Enrollment:
    """What an enrolled runner gets back: its id, its certificate, and the CA to pin."""

    runner_id: str
    cert_pem: bytes
    ca_pem: bytes
    cert_serial: str
    not_after: datetime
    zone: str
    capabilities: tuple[str, ...]


def create_enrollment_token(
    session: Session,
    *,
    zone: str,
    capabilities: Iterable[str],
    created_by: str,
    ttl: timedelta,
    now: datetime,
) -> str:
    """Create a one-time token that enrolls one runner in ``zone`` with ``capabilities``.

    Returns the token, which exists nowhere else: only its SHA-256 is stored. The lifetime
    is at most 30 days; a token that lingers is a credential nobody remembers. Audited as
    ``runners.token_create``.
    """
    at = _aware(now)
    problems: list[Diagnostic] = []
    if not timedelta(0) < ttl <= MAX_TOKEN_TTL:
        problems.append(Diagnostic("/ttl", f"more than 0 and at most {MAX_TOKEN_TTL.days} days"))
    if not created_by or len(created_by) > 200:  # noqa: PLR2004 - the column's length
        problems.append(Diagnostic("/created_by", "1 to 200 characters"))
    try:
        granted = validate_capabilities(capabilities)
    except ValidationFailedError as err:
        problems.extend(err.diagnostics)
        granted = []
    try:
        validate_zone(zone)
    except ValidationFailedError as err:
        problems.extend(err.diagnostics)
    if problems:
        raise ValidationFailedError(problems)
    token_id = secrets.token_hex(8)
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    row = EnrollmentTokenRow(
        id=token_id,
        token_hash=token_hash(token),
        zone=zone,
        capabilities=granted,
        created_by=created_by,
        created_at=at,
        expires_at=at + ttl,
        used_at=None,
        used_by_runner=None,
    )
    session.add(row)
    session.flush()
    audit.append(
        session,
        folder=INSTALL_FOLDER,
        actor=created_by,
        action="runners.token_create",
        resource=f"enrollment_token:{token_id}",
        details={"zone": zone, "capabilities": granted, "expires_at": row.expires_at.isoformat()},
    )
    return token


def _usable_token(session: Session, token: str, at: datetime) -> EnrollmentTokenRow:
    if not _TOKEN_SHAPE.fullmatch(token):
        raise RunnerRefused("malformed")
    query = select(EnrollmentTokenRow).where(EnrollmentTokenRow.token_hash == token_hash(token))
    row = session.scalars(query.execution_options(populate_existing=True)).one_or_none()
    if row is None:
        raise RunnerRefused("unknown")
    if row.used_at is not None:
        raise RunnerRefused("used", runner_id=row.used_by_runner)
    if row.expires_at <= at:
        raise RunnerRefused("expired")
    return row


def enroll(
    session: Session,
    ca: PlatformCA,
    *,
    token: str,
    csr_pem: bytes | str,
    name: str,
    now: datetime,
    cert_days: int = 30,
    max_jobs: int = 1,
) -> Enrollment:
    """Turn a one-time token and a CSR into a registered runner with a client certificate.

    The token must exist, be unused and unexpired, else RunnerRefused (an
    AuthenticationError with a generic message; ``reason`` says which). It is used up in
    the caller's transaction, by a conditional update, so two enrollments racing with one
    token register one runner. The CSR must carry a valid signature and an allowed key
    (ValidationFailedError); every change happens in a savepoint, so a refusal leaves
    nothing behind and the token stays usable after a bad CSR. Audited as
    ``runners.enroll``.
    """
    at = _aware(now)
    row = _usable_token(session, token, at)
    if not 1 <= cert_days <= MAX_CERT_DAYS:
        raise ValidationFailedError([Diagnostic("/cert_days", f"1 to {MAX_CERT_DAYS} days")])
    public_key = _csr_public_key(csr_pem)
    runner_id = f"rnr-{secrets.token_hex(8)}"
    cert = ca.issue_client_cert(
        public_key, runner_id=runner_id, zone=row.zone, now=at, days=cert_days
    )
    with session.begin_nested():
        runner = register_runner(
            session,
            runner_id=runner_id,
            name=name,
            zone=row.zone,
            capabilities=row.capabilities,
            cert_serial=serial_hex(cert),
            cert_not_after=cert.not_valid_after_utc,
            now=at,
            max_jobs=max_jobs,
        )
        consumed = session.execute(
            update(EnrollmentTokenRow)
            .where(
                EnrollmentTokenRow.id == row.id,
                EnrollmentTokenRow.used_at.is_(None),
                EnrollmentTokenRow.expires_at > at,
            )
            .values(used_at=at, used_by_runner=runner_id)
            .returning(EnrollmentTokenRow.id)
        ).first()
        if consumed is None:  # another enrollment used it since we read it
            raise RunnerRefused("used")
        audit.append(
            session,
            folder=INSTALL_FOLDER,
            actor=f"enrollment_token:{row.id}",
            action="runners.enroll",
            resource=f"runner:{runner_id}",
            details={
                "name": runner.name,
                "zone": runner.zone,
                "capabilities": list(runner.capabilities),
                "cert_serial": runner.cert_serial,
                "cert_not_after": runner.cert_not_after.isoformat(),
                "token_created_by": row.created_by,
            },
        )
    return Enrollment(
        runner_id=runner_id,
        cert_pem=_pem(cert),
        ca_pem=ca.certificate_pem,
        cert_serial=runner.cert_serial,
        not_after=runner.cert_not_after,
        zone=runner.zone,
        capabilities=tuple(runner.capabilities),
    )


def _load_cert(cert: bytes | str) -> x509.Certificate:
    data = cert.encode() if isinstance(cert, str) else cert
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise RunnerRefused("malformed") from None


def _uri_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return san.value.get_values_for_type(x509.UniformResourceIdentifier)


def _client_usage(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CLIENT_AUTH in eku.value and not basic.value.ca


def verify_client_cert(
    session: Session, ca: PlatformCA, cert_pem_or_der: bytes | str, *, now: datetime
) -> RunnerRow:
    """Return the runner a client certificate belongs to, or refuse it (RunnerRefused).

    Checked: signed by this CA (its public key, not just a matching issuer name), both
    certificates valid at ``now``, meant for client authentication, its serial registered,
    its CN and URI naming that runner and its zone, and the runner not revoked. The TLS
    layer checks the chain as well; this is the check that knows about revocation, and it
    reads the runner's row every time, so a revocation takes effect at the next request.
    A draining runner still passes: it must be able to finish and report its jobs.
    """
    cert = _load_cert(cert_pem_or_der)
    ca.verify_issued(cert, now=now)
    if not _client_usage(cert):
        raise RunnerRefused("usage")
    runner = session.scalars(
        select(RunnerRow)
        .where(RunnerRow.cert_serial == serial_hex(cert))
        .execution_options(populate_existing=True)
    ).one_or_none()
    if runner is None:
        raise RunnerRefused("unknown")
    common_names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    urn = RUNNER_URN.format(runner_id=runner.id, zone=runner.zone)
    if [str(attribute.value) for attribute in common_names] != [runner.id] or _uri_names(cert) != [
        urn
    ]:
        raise RunnerRefused("mismatch", runner_id=runner.id)
    if runner.status == "revoked":
        raise RunnerRefused("revoked", runner_id=runner.id)
    return runner
