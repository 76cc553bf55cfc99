"""Short-lived session tokens: JWTs signed with the install's own Ed25519 key.

A session token is what a password sign-in or a client-credentials grant hands out. It is
short-lived because it is not looked up on every request: it dies by its ``exp``, or all at
once when its owner's ``tokens_valid_after`` moves past its ``iat``. The key is made on first
use, never shipped, and refused when anyone but its owner can read it, because whoever
reads it can mint a session for any account.

Verification pins everything an attacker could otherwise choose: the algorithm (EdDSA only,
so neither ``none`` nor an HMAC keyed with the public key), the issuer, the audience, the
token type, and the claims that must be present.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from amosflow.errors import AmosError
from amosflow.host import exposure, write_private
from amosflow.identity._clock import utc_now
from amosflow.identity._signin import LoginRefused

if TYPE_CHECKING:
    from pathlib import Path

    from amosflow.config import IdentitySettings

ISSUER = "amosflow"
AUDIENCE = "amosflow"
ALGORITHM = "EdDSA"
TOKEN_TYPE = "session"  # noqa: S105 - the typ claim, not a secret
#: The one answer to every refused session token.
SESSION_REFUSED = "invalid or expired session"
#: Clock difference tolerated between the nodes of one install for ``iat``.
CLOCK_SKEW = timedelta(seconds=30)
_REQUIRED = ["iss", "aud", "sub", "iat", "exp", "jti"]


class IdentityKeyError(AmosError):
    """An identity key file (session key, setup token) is unreadable, malformed or unsafe."""

    code = "amos.identity.key"


@dataclass(frozen=True, slots=True)
class SessionClaims:
    """The verified claims of a session token (``iat`` and ``exp`` in whole UTC seconds)."""

    sub: str
    iat: datetime
    exp: datetime
    jti: str


def _check_private(path: Path) -> None:
    problem = exposure(path)
    if problem is not None:
        raise IdentityKeyError(f"refusing {path}: {problem}")


def load_private_key(path: Path, *, create: bool = True) -> Ed25519PrivateKey:
    """Load the Ed25519 key at ``path``, creating it (0600, in a 0700 directory) if allowed.

    Two processes starting together keep one key: the file is created exclusively.
    Raises IdentityKeyError when it is missing (and ``create`` is false), readable by group
    or others, or not a PEM Ed25519 private key.
    """
    if not path.exists():
        if not create:
            raise IdentityKeyError(f"the session key {path} does not exist")
        fresh = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private(path, fresh, exclusive=True)
    _check_private(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise IdentityKeyError(f"{path} is not a readable PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityKeyError(f"{path} is not an Ed25519 key")
    return key


def _key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _refused(reason: str) -> LoginRefused:
    return LoginRefused(SESSION_REFUSED, reason=reason)


def _timestamp(value: Any, name: str) -> datetime:
    # bool is an int in Python; a JSON true is not a timestamp.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _refused(f"bad_{name}")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise _refused(f"bad_{name}") from exc


class SessionSigner:
    """Issues and verifies the session tokens of this install."""

    def __init__(self, private_key: Ed25519PrivateKey, *, ttl_seconds: int = 900) -> None:
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = _key_id(self.public_key)
        self.ttl_seconds = ttl_seconds

    @classmethod
    def from_settings(cls, settings: IdentitySettings, *, create: bool = True) -> SessionSigner:
        """The signer of the install's key at ``settings.session_key_path``."""
        key = load_private_key(settings.session_key_path, create=create)
        return cls(key, ttl_seconds=settings.session_ttl_seconds)

    def issue(
        self,
        principal_id: str,
        *,
        ttl_seconds: int | None = None,
        now: datetime | None = None,
    ) -> tuple[str, datetime]:
        """Sign a session token for ``principal_id``; return it and when it expires.

        ``iat`` is rounded down to the second, so a token issued in the same second as a
        revocation counts as issued before it: the rounding errs towards dead.
        """
        ttl = self.ttl_seconds if ttl_seconds is None else ttl_seconds
        if ttl < 1:
            raise ValueError("a session lasts at least one second")
        issued = int(utc_now(now).timestamp())
        expires = issued + ttl
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": principal_id,
            "iat": issued,
            "exp": expires,
            "jti": secrets.token_hex(16),
            "typ": TOKEN_TYPE,
        }
        token = jwt.encode(
            claims, self._private_key, algorithm=ALGORITHM, headers={"kid": self.key_id}
        )
        return token, datetime.fromtimestamp(expires, UTC)

    def verify(self, token: str, *, now: datetime | None = None) -> SessionClaims:
        """Return the claims of a valid, unexpired session token of this install.

        Raises LoginRefused (an AuthenticationError with a generic message, the reason on
        the instance) for anything else; never a jwt exception.
        """
        at = utc_now(now)
        try:
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                audience=AUDIENCE,
                # Time is checked below against ``now`` so that tests need not wait.
                options={"require": _REQUIRED, "verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidSignatureError:
            raise _refused("bad_signature") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise _refused("invalid") from None
        if claims.get("typ") != TOKEN_TYPE:
            raise _refused("wrong_type")
        sub, jti = claims["sub"], claims["jti"]
        if not isinstance(sub, str) or not sub or not isinstance(jti, str) or not jti:
            raise _refused("invalid")
        issued = _timestamp(claims["iat"], "iat")
        expires = _timestamp(claims["exp"], "exp")
        if expires <= at:
            raise _refused("expired")
        if issued > at + CLOCK_SKEW:
            raise _refused("not_yet_valid")
        return SessionClaims(sub=sub, iat=issued, exp=expires, jti=jti)


def looks_like_session(token: str) -> bool:
    """Whether ``token`` claims to be one of our session tokens (nothing is verified).

    Routes a bearer token to ``SessionSigner.verify``; a forgery that claims to be ours is
    routed there too, and refused by the strictest check, instead of reaching another one.
    """
    if token.count(".") != 2:  # noqa: PLR2004 - header.payload.signature
        return False
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError):
        return False
    return claims.get("iss") == ISSUER and claims.get("typ") == TOKEN_TYPE
