"""Enrollment: a one-time token and a CSR become a registered runner with a certificate.

Every later request of a runner is checked by ``verify_client_cert``, which reads the
runner's row each time, so revocation needs no CRL: a revoked runner is refused at once.
Runner keys may be ECDSA P-256 or P-384, or RSA of 3072 bits or more, because those are
what every TLS stack a runner may bring can use.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select, update

from amosflow import audit
from amosflow.errors import Diagnostic, ValidationFailedError
from amosflow.runner.dispatch._ca import MAX_CERT_DAYS, RUNNER_URN, PlatformCA, pem, serial_hex
from amosflow.runner.dispatch._grants import (
    RunnerRefused,
    aware,
    validate_capabilities,
    validate_zone,
)
from amosflow.runner.dispatch._registry import register_runner
from amosflow.store import INSTALL_FOLDER, EnrollmentTokenRow, RunnerRow

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.orm import Session

TOKEN_PREFIX = "amos_enr_"  # noqa: S105 - a prefix, not a secret


#: ``amos_enr_`` + 16 hex digits (the token's id) + ``_`` + URL-safe base64 of 32 random bytes.
_TOKEN_SHAPE = re.compile(r"amos_enr_([0-9a-f]{16})_[A-Za-z0-9_-]{43}")


MAX_TOKEN_TTL = timedelta(days=30)


MIN_RSA_BITS = 3072


_CURVES = (ec.SECP256R1, ec.SECP384R1)


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
    at = aware(now)
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
    at = aware(now)
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
        cert_pem=pem(cert),
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
