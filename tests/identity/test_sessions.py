"""Session tokens: EdDSA only, our issuer and audience only, our key only, and a safe key file."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from amosflow.errors import AuthenticationError
from amosflow.identity import IdentityKeyError, SessionSigner, looks_like_session


@pytest.fixture
def signer(settings) -> SessionSigner:
    return SessionSigner.from_settings(settings)


def refused(signer: SessionSigner, token: str, now: datetime | None = None) -> str:
    """Verify ``token`` expecting a refusal; return its reason."""
    with pytest.raises(AuthenticationError) as caught:
        signer.verify(token, now=now)
    assert str(caught.value) == "invalid or expired session"
    assert not isinstance(caught.value, jwt.PyJWTError)
    return str(getattr(caught.value, "reason", ""))


def claims_of(signer: SessionSigner, **overrides) -> dict:
    at = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": "amosflow",
        "aud": "amosflow",
        "sub": "p1",
        "iat": at,
        "exp": at + 600,
        "jti": "j1",
        "typ": "session",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(signer: SessionSigner, claims: dict) -> str:
    return jwt.encode(claims, signer._private_key, algorithm="EdDSA")


def test_round_trip(signer: SessionSigner) -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    token, expires = signer.issue("principal-1", now=at)
    assert expires == datetime(2030, 1, 2, 3, 19, 5, tzinfo=UTC)
    claims = signer.verify(token, now=at)
    assert claims.sub == "principal-1"
    assert claims.iat == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)  # rounded down
    assert claims.exp == expires
    assert len(claims.jti) == 32
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    assert header["kid"] == signer.key_id
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["typ"] == "session"
    assert (payload["iss"], payload["aud"]) == ("amosflow", "amosflow")


def test_real_clock_round_trip_and_unique_ids(signer: SessionSigner) -> None:
    first, _ = signer.issue("p")
    second, _ = signer.issue("p", ttl_seconds=60)
    assert signer.verify(first).jti != signer.verify(second).jti
    assert (signer.verify(second).exp - signer.verify(second).iat) == timedelta(seconds=60)


def test_expired_token_is_refused(signer: SessionSigner) -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    token, expires = signer.issue("p", ttl_seconds=60, now=at)
    signer.verify(token, now=expires - timedelta(seconds=1))
    assert refused(signer, token, now=expires) == "expired"
    # Without an explicit now the real clock decides: 2030 is in the future, so build a past one.
    old, _ = signer.issue("p", ttl_seconds=60, now=datetime.now(UTC) - timedelta(hours=1))
    assert refused(signer, old) == "expired"


def test_token_from_the_future_is_refused(signer: SessionSigner) -> None:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    token, _ = signer.issue("p", now=at)
    signer.verify(token, now=at - timedelta(seconds=30))  # tolerated clock skew
    assert refused(signer, token, now=at - timedelta(minutes=5)) == "not_yet_valid"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_tampered_signature_is_refused(signer: SessionSigner) -> None:
    token, _ = signer.issue("p")
    head, body, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 0x01
    assert refused(signer, f"{head}.{body}.{_b64(bytes(raw))}") == "bad_signature"


def test_tampered_payload_is_refused(signer: SessionSigner) -> None:
    token, _ = signer.issue("alice")
    head, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["sub"] = "admin"
    forged = f"{head}.{_b64(json.dumps(claims).encode())}.{signature}"
    assert refused(signer, forged) == "bad_signature"


def test_alg_none_token_is_refused(signer: SessionSigner) -> None:
    token = jwt.encode(claims_of(signer), None, algorithm="none")
    assert token.endswith(".")
    assert looks_like_session(token)  # routed to the session verifier, which refuses it
    assert refused(signer, token) == "invalid"


def test_hmac_with_the_public_key_is_refused(signer: SessionSigner) -> None:
    """The classic key-confusion forgery: HS256 keyed with the (public) verification key."""
    public = signer.public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims_of(signer)).encode())
    mac = hmac.new(public, f"{header}.{body}".encode(), hashlib.sha256).digest()
    assert refused(signer, f"{header}.{body}.{_b64(mac)}") == "invalid"


def test_token_signed_by_another_key_is_refused(signer: SessionSigner) -> None:
    stranger = SessionSigner(Ed25519PrivateKey.generate())
    token, _ = stranger.issue("p")
    assert looks_like_session(token)
    assert refused(signer, token) == "bad_signature"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "someone-else"}, "invalid"),
        ({"aud": "other-app"}, "invalid"),
        ({"typ": "refresh"}, "wrong_type"),
        ({"exp": None}, "invalid"),
        ({"iat": None}, "invalid"),
        ({"sub": None}, "invalid"),
        ({"jti": None}, "invalid"),
        ({"sub": ""}, "invalid"),
    ],
)
def test_claims_are_pinned(signer: SessionSigner, overrides: dict, reason: str) -> None:
    assert refused(signer, sign(signer, claims_of(signer, **overrides))) == reason


@pytest.mark.parametrize(
    "token", ["", "garbage", "a.b.c", "...", "amos_pat_0123456789abcdef_x", "e30.e30.e30"]
)
def test_garbage_is_an_authentication_error(signer: SessionSigner, token: str) -> None:
    refused(signer, token)
    assert not looks_like_session(token)


def test_looks_like_session_routes_by_issuer_and_type(signer: SessionSigner) -> None:
    token, _ = signer.issue("p")
    assert looks_like_session(token)
    foreign = jwt.encode({"iss": "https://idp.example", "sub": "x"}, "k" * 32, algorithm="HS256")
    assert not looks_like_session(foreign)
    assert not looks_like_session(sign(signer, claims_of(signer, typ="id_token")))


def test_key_file_is_private_and_reused(settings) -> None:
    first = SessionSigner.from_settings(settings)
    path = settings.session_key_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    second = SessionSigner.from_settings(settings)
    assert second.key_id == first.key_id
    token, _ = first.issue("p")
    assert second.verify(token).sub == "p"
    assert second.ttl_seconds == settings.session_ttl_seconds


def test_key_file_readable_by_others_is_refused(settings) -> None:
    SessionSigner.from_settings(settings)
    settings.session_key_path.chmod(0o644)
    with pytest.raises(IdentityKeyError, match="chmod 600"):
        SessionSigner.from_settings(settings)


def test_missing_key_is_refused_when_creation_is_not_allowed(settings) -> None:
    with pytest.raises(IdentityKeyError, match="does not exist"):
        SessionSigner.from_settings(settings, create=False)
    assert not settings.session_key_path.exists()


def test_key_file_of_another_type_is_refused(settings) -> None:
    path = settings.session_key_path
    path.parent.mkdir(mode=0o700, parents=True)
    path.write_bytes(b"not a key")
    path.chmod(0o600)
    with pytest.raises(IdentityKeyError, match="not a readable PEM"):
        SessionSigner.from_settings(settings)
