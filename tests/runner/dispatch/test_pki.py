"""The platform CA and enrollment, with real x509: tokens, CSRs, certificates, revocation."""

from __future__ import annotations

import stat
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from amosflow.errors import AuthenticationError, ValidationFailedError, VaultError
from amosflow.runner.agent import generate_runner_key, make_csr
from amosflow.runner.dispatch import (
    PlatformCA,
    RunnerRefused,
    acquire,
    create_enrollment_token,
    enqueue,
    enroll,
    get_runner,
    heartbeat,
    list_runners,
    revoke,
    token_hash,
    verify_client_cert,
)
from amosflow.store import EnrollmentTokenRow, Store
from tests.runner.dispatch.conftest import T0, TTL, at, audit_rows, new_job

DAY = timedelta(days=1)


@pytest.fixture
def ca(tmp_path: Path) -> PlatformCA:
    """A CA made a month before the test clock's start, so back-dated enrollments fit in it."""
    return PlatformCA.load_or_create(tmp_path / "ca", now=T0 - timedelta(days=30))


def _token(
    store: Store, *, zone: str = "dc1", capabilities=("http", "browser"), ttl=DAY, now=T0
) -> str:
    with store.session() as session:
        return create_enrollment_token(
            session, zone=zone, capabilities=capabilities, created_by="user:ops", ttl=ttl, now=now
        )


def _enroll(store: Store, ca: PlatformCA, token: str, *, now=T0, cert_days: int = 30, key=None):
    csr = make_csr(key or generate_runner_key(), "edge-1")
    with store.session() as session:
        return enroll(
            session, ca, token=token, csr_pem=csr, name="edge-1", now=now, cert_days=cert_days
        )


def _refusal(store: Store, call) -> str:
    with store.session() as session, pytest.raises(RunnerRefused) as refused:
        call(session)
    assert isinstance(refused.value, AuthenticationError)
    assert str(refused.value) == "runner credentials refused"
    return refused.value.reason


# --- the CA --------------------------------------------------------------------------------


def test_the_ca_is_created_once_with_a_private_key_file(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    ca = PlatformCA.load_or_create(directory, now=T0)
    key_file = directory / "ca.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    cert = ca.certificate
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(cert.public_key().curve, ec.SECP256R1)
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical
    assert basic.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert cert.not_valid_after_utc - cert.not_valid_before_utc >= timedelta(days=3650)
    cert.verify_directly_issued_by(cert)  # self-signed

    again = PlatformCA.load_or_create(directory)
    assert again.fingerprint == ca.fingerprint
    assert again.certificate_pem == ca.certificate_pem
    assert ca.fingerprint.startswith("sha256:")


def test_a_ca_key_others_can_read_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    PlatformCA.load_or_create(directory, now=T0)
    (directory / "ca.key").chmod(0o644)
    with pytest.raises(VaultError, match="chmod 600"):
        PlatformCA.load_or_create(directory)


def test_two_first_starts_at_once_agree_on_one_ca(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    barrier = threading.Barrier(4)
    found: list[str] = []

    def start() -> None:
        barrier.wait()
        found.append(PlatformCA.load_or_create(directory).fingerprint)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 4
    assert len(set(found)) == 1


def test_a_certificate_that_does_not_match_the_key_is_refused(tmp_path: Path) -> None:
    first = tmp_path / "one"
    second = tmp_path / "two"
    PlatformCA.load_or_create(first, now=T0)
    PlatformCA.load_or_create(second, now=T0)
    (first / "ca.crt").write_bytes((second / "ca.crt").read_bytes())
    with pytest.raises(VaultError, match="does not belong"):
        PlatformCA.load_or_create(first)


def test_the_server_certificate_is_signed_by_the_ca_for_the_names(ca: PlatformCA) -> None:
    cert_pem, key_pem = ca.issue_server_cert(["runners.amos.local", "127.0.0.1", "::1"], now=T0)
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(ca.certificate)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["runners.amos.local"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == cert.public_key()
    with pytest.raises(ValidationFailedError):
        ca.issue_server_cert([], now=T0)
    with pytest.raises(ValidationFailedError):
        ca.issue_server_cert(["not a host"], now=T0)


# --- enrollment tokens ---------------------------------------------------------------------


def test_a_token_is_stored_only_as_its_hash_and_audited(store: Store) -> None:
    token = _token(store)
    assert token.startswith("amos_enr_")
    with store.session(read_only=True) as session:
        (row,) = session.query(EnrollmentTokenRow).all()
        assert row.token_hash == token_hash(token)
        assert token not in (row.id, row.token_hash)
        assert (row.zone, row.capabilities, row.expires_at) == (
            "dc1",
            ["browser", "http"],
            T0 + DAY,
        )
        (record,) = audit_rows(session, "runners.token_create")
        assert record.actor == "user:ops"
        assert record.resource == f"enrollment_token:{row.id}"
        assert token not in str(record.details)


def test_a_token_with_unknown_capabilities_or_zone_is_invalid(store: Store) -> None:
    with store.session() as session, pytest.raises(ValidationFailedError) as invalid:
        create_enrollment_token(
            session,
            zone="DC 1",
            capabilities=["http", "teleport"],
            created_by="user:ops",
            ttl=DAY,
            now=T0,
        )
    pointers = {d.pointer for d in invalid.value.diagnostics}
    assert pointers == {"/zone", "/capabilities/1"}
    for capabilities, ttl in (([], DAY), (["http"], timedelta(0)), (["http"], timedelta(days=31))):
        with store.session() as session, pytest.raises(ValidationFailedError):
            create_enrollment_token(
                session,
                zone="dc1",
                capabilities=capabilities,
                created_by="user:ops",
                ttl=ttl,
                now=T0,
            )


# --- enrollment ----------------------------------------------------------------------------


def test_enrollment_round_trip(store: Store, ca: PlatformCA) -> None:
    token = _token(store)
    key = generate_runner_key()
    enrolled = _enroll(store, ca, token, key=key, now=at(60))
    assert enrolled.ca_pem == ca.certificate_pem
    assert enrolled.zone == "dc1"
    assert enrolled.capabilities == ("browser", "http")

    cert = x509.load_pem_x509_certificate(enrolled.cert_pem)
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.public_key() == key.public_key()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == enrolled.runner_id
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"urn:amosflow:runner:{enrolled.runner_id}:dc1"
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc == at(60) + timedelta(days=30)
    assert format(cert.serial_number, "x") == enrolled.cert_serial

    with store.session() as session:
        runner = verify_client_cert(session, ca, enrolled.cert_pem, now=at(120))
        assert (runner.id, runner.name, runner.zone, runner.status) == (
            enrolled.runner_id,
            "edge-1",
            "dc1",
            "active",
        )
        assert runner.capabilities == ["browser", "http"]
        # DER works as well as PEM (what a TLS terminator hands over).
        der = cert.public_bytes(serialization.Encoding.DER)
        assert verify_client_cert(session, ca, der, now=at(120)).id == enrolled.runner_id
        token_row = session.query(EnrollmentTokenRow).one()
        assert (token_row.used_at, token_row.used_by_runner) == (at(60), enrolled.runner_id)
        (record,) = audit_rows(session, "runners.enroll")
        assert record.resource == f"runner:{enrolled.runner_id}"
        assert record.actor == f"enrollment_token:{token_row.id}"
        assert record.details["zone"] == "dc1"
        assert record.details["token_created_by"] == "user:ops"


def test_an_enrolled_runner_offers_within_its_grant_and_takes_jobs(
    store: Store, ca: PlatformCA
) -> None:
    enrolled = _enroll(store, ca, _token(store))
    runner_id = enrolled.runner_id
    with store.session() as session:
        heartbeat(session, runner_id, load=0, capabilities=["http"], zone="dc1", now=at(1))
        # Its grant (from the token) lets it offer the browser again once it works.
        row = heartbeat(
            session, runner_id, load=0, capabilities=["browser", "http"], zone="dc1", now=at(2)
        )
        assert row.capabilities == ["browser", "http"]
        enqueue(session, new_job("j1", capability="browser", zone="dc1"), now=at(3))
        lease = acquire(
            session, runner_id, capabilities=["browser"], zone="dc1", now=at(4), ttl=TTL
        )
        assert lease is not None
        assert lease.job_id == "j1"


def test_a_used_token_is_refused(store: Store, ca: PlatformCA) -> None:
    token = _token(store)
    first = _enroll(store, ca, token)
    reason = _refusal(
        store,
        lambda session: enroll(
            session,
            ca,
            token=token,
            csr_pem=make_csr(generate_runner_key(), "x"),
            name="x",
            now=at(1),
        ),
    )
    assert reason == "used"
    with store.session(read_only=True) as session:
        assert get_runner(session, first.runner_id).status == "active"
        assert len(audit_rows(session, "runners.enroll")) == 1


def test_an_expired_unknown_or_malformed_token_is_refused(store: Store, ca: PlatformCA) -> None:
    token = _token(store, ttl=timedelta(hours=1))
    csr = make_csr(generate_runner_key(), "x")

    def attempt(value: str, now):
        return lambda session: enroll(session, ca, token=value, csr_pem=csr, name="x", now=now)

    assert _refusal(store, attempt(token, T0 + timedelta(hours=1))) == "expired"
    unknown = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert _refusal(store, attempt(unknown, T0)) == "unknown"
    assert _refusal(store, attempt("amos_enr_nope", T0)) == "malformed"
    # None of these used the token up.
    assert _enroll(store, ca, token, now=at(10)).zone == "dc1"


def test_a_csr_with_a_bad_signature_is_refused_and_the_token_survives(
    store: Store, ca: PlatformCA
) -> None:
    token = _token(store)
    csr = x509.load_pem_x509_csr(make_csr(generate_runner_key(), "runner-a"))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    position = bytes(der).index(b"runner-a")
    der[position + len("runner-")] = ord("b")  # the signed subject changes, the signature does not
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    assert not x509.load_pem_x509_csr(tampered).is_signature_valid
    for bad in (tampered, b"not a csr"):
        with store.session() as session, pytest.raises(ValidationFailedError) as invalid:
            enroll(session, ca, token=token, csr_pem=bad, name="x", now=at(1))
        assert invalid.value.diagnostics[0].pointer == "/csr"
    with store.session(read_only=True) as session:
        assert session.query(EnrollmentTokenRow).one().used_at is None
    assert _enroll(store, ca, token).zone == "dc1"


def test_a_weak_key_is_refused(store: Store, ca: PlatformCA) -> None:
    token = _token(store)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with store.session() as session, pytest.raises(ValidationFailedError, match="RSA of 3072"):
        enroll(session, ca, token=token, csr_pem=make_csr(weak, "x"), name="x", now=at(1))
    strong = ec.generate_private_key(ec.SECP384R1())
    assert _enroll(store, ca, token, key=strong).zone == "dc1"


# --- client certificates -------------------------------------------------------------------


def test_a_certificate_from_another_ca_is_refused(store: Store, ca: PlatformCA, tmp_path) -> None:
    other = PlatformCA.load_or_create(tmp_path / "other", now=T0)
    enrolled = _enroll(store, ca, _token(store))
    # Same runner id, zone and serial, but signed by a CA that is not ours.
    forged = other.issue_client_cert(
        x509.load_pem_x509_certificate(enrolled.cert_pem).public_key(),
        runner_id=enrolled.runner_id,
        zone="dc1",
        now=T0,
        days=30,
    )
    forged_pem = forged.public_bytes(serialization.Encoding.PEM)
    assert _refusal(store, lambda s: verify_client_cert(s, ca, forged_pem, now=at(1))) == "wrong_ca"
    server_pem, _ = ca.issue_server_cert(["runners.amos.local"], now=T0)
    assert _refusal(store, lambda s: verify_client_cert(s, ca, server_pem, now=at(1))) == "usage"
    assert (
        _refusal(store, lambda s: verify_client_cert(s, ca, b"garbage", now=at(1))) == "malformed"
    )


def test_a_revoked_runner_is_refused_at_once(store: Store, ca: PlatformCA) -> None:
    enrolled = _enroll(store, ca, _token(store))
    with store.session() as session:
        assert verify_client_cert(session, ca, enrolled.cert_pem, now=at(1)).status == "active"
        revoke(session, enrolled.runner_id, actor="user:ops", now=at(2))
    reason = _refusal(store, lambda s: verify_client_cert(s, ca, enrolled.cert_pem, now=at(3)))
    assert reason == "revoked"


def test_an_expired_certificate_is_refused(store: Store, ca: PlatformCA) -> None:
    token = _token(store, now=at(-3 * 86400))
    enrolled = _enroll(store, ca, token, now=at(-3 * 86400), cert_days=1)
    with store.session() as session:
        assert verify_client_cert(session, ca, enrolled.cert_pem, now=at(-2 * 86400 - 60)).id
    reason = _refusal(store, lambda s: verify_client_cert(s, ca, enrolled.cert_pem, now=T0))
    assert reason == "expired"
    early = at(-4 * 86400)
    reason = _refusal(store, lambda s: verify_client_cert(s, ca, enrolled.cert_pem, now=early))
    assert reason == "not_yet_valid"


def test_a_certificate_whose_serial_is_not_registered_is_refused(
    store: Store, ca: PlatformCA
) -> None:
    enrolled = _enroll(store, ca, _token(store))
    cert = x509.load_pem_x509_certificate(enrolled.cert_pem)
    # A genuine CA signature on an identity the store never registered.
    stray = ca.issue_client_cert(
        cert.public_key(), runner_id=enrolled.runner_id, zone="dc1", now=T0, days=30
    ).public_bytes(serialization.Encoding.PEM)
    assert _refusal(store, lambda s: verify_client_cert(s, ca, stray, now=at(1))) == "unknown"


def test_a_token_used_between_read_and_update_registers_one_runner(
    pg_store: Store, ca: PlatformCA, monkeypatch
) -> None:
    """Two enrollments race with one token: the conditional update lets exactly one win.

    The second enrollment is paused after it read the token as unused; the first one runs
    to its commit in that gap, and the second's update then finds the token used.
    """
    from amosflow.runner.dispatch import _enrollment as pki

    token = _token(pg_store)
    register = pki.register_runner
    raced: list[str] = []

    def register_after_a_rival(session, **kwargs):
        if not raced:
            raced.append("rival")
            with pg_store.session() as rival:
                csr = make_csr(generate_runner_key(), "rival")
                enroll(rival, ca, token=token, csr_pem=csr, name="rival", now=at(1))
        return register(session, **kwargs)

    monkeypatch.setattr(pki, "register_runner", register_after_a_rival)
    with pg_store.session() as session, pytest.raises(RunnerRefused) as refused:
        enroll(
            session,
            ca,
            token=token,
            csr_pem=make_csr(generate_runner_key(), "late"),
            name="late",
            now=at(1),
        )
    assert refused.value.reason == "used"
    with pg_store.session(read_only=True) as session:
        assert [r.name for r in list_runners(session)] == ["rival"]
        assert len(audit_rows(session, "runners.enroll")) == 1
