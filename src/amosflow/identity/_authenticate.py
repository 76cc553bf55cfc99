"""Turn a request's credentials into a Principal, or refuse — and audit every refusal.

Three kinds of bearer token reach the API: our own session tokens (after a login or a client
credentials grant), personal API tokens (``amos_pat_…``), and JWTs from the enterprise IdP.
The token's shape picks the one verifier that may accept it; nothing falls through to a
weaker check. Refusals are answered with one generic message and recorded with their real
reason, the caller's address, and an HMAC of the token (never the token).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from amosflow import audit
from amosflow.errors import AuditError, AuthenticationError, NotFoundError, RateLimitedError
from amosflow.host import RateLimits
from amosflow.identity._bindings import to_principal
from amosflow.identity._oidc import looks_like_jwt
from amosflow.identity._sessions import looks_like_session
from amosflow.identity._signin import LoginRefused
from amosflow.identity._tokens import authenticate_api_token
from amosflow.identity._users import USERNAME, create_user, find_by_username, get_principal
from amosflow.store import INSTALL_FOLDER, PrincipalRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from amosflow.config import IdentitySettings
    from amosflow.identity._oidc import OidcIdentity, OidcVerifier
    from amosflow.identity._principal import Principal
    from amosflow.identity._sessions import SessionSigner
    from amosflow.store import Store


# The name it had before the module went private, so logging configurations keep working.
log = logging.getLogger("amosflow.identity.authenticate")
PAT_PREFIX = "amos_pat_"
CREDENTIALS_REFUSED = "missing or invalid credentials"
MAX_TOKEN_CHARS = 8192


def _reason(err: AuthenticationError) -> str:
    return str(getattr(err, "reason", "invalid"))


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS:
        return None
    return token


@dataclass
class Authenticator:
    """Identifies callers for the API; one per process, shared by every request."""

    store: Store
    settings: IdentitySettings
    signer: SessionSigner
    oidc: OidcVerifier | None = None
    fingerprint_key: bytes = b""
    limits: RateLimits | None = None

    def __post_init__(self) -> None:
        if self.limits is None:
            self.limits = RateLimits()

    def throttle(self, address: str, purpose: str = "token") -> None:
        """Raise RateLimitedError when ``address`` has spent its attempts for ``purpose``.

        Refused tokens and sign-in attempts have a bucket each per address, both at
        ``login_rate_per_minute``.
        """
        assert self.limits is not None
        rate = self.settings.login_rate_per_minute / 60.0
        burst = max(1, self.settings.login_rate_per_minute)
        wait = self.limits.take(f"{purpose}:{address}", rate, burst)
        if wait > 0:
            raise RateLimitedError("too many attempts; try again later", retry_after=wait)

    async def authenticate(self, authorization: str | None, *, address: str) -> Principal:
        """The principal behind an Authorization header; AuthenticationError otherwise."""
        token = bearer(authorization)
        try:
            if token is None:
                raise _refused("missing")
            return await self._verify(token)
        except AuthenticationError as err:
            if _reason(err) != "missing":
                self.throttle(address)
                self._audit_failure(err, token, address)
            raise AuthenticationError(CREDENTIALS_REFUSED) from None

    async def _verify(self, token: str) -> Principal:
        if token.startswith(PAT_PREFIX):
            with self.store.session() as session:
                row, owner = authenticate_api_token(session, token)
                scopes = frozenset(row.scopes) if row.scopes is not None else None
                return to_principal(session, owner, via="token", token_id=row.id, scopes=scopes)
        if looks_like_session(token):
            claims = self.signer.verify(token)
            with self.store.session() as session:
                try:
                    owner = get_principal(session, claims.sub)
                except NotFoundError:
                    raise _refused("unknown") from None
                _check_alive(owner, claims.iat)
                if owner.kind == "service":
                    return to_principal(session, owner, via="client")
                return to_principal(session, owner, via="session")
        if self.oidc is not None and looks_like_jwt(token):
            identity = await self.oidc.verify(token)
            with self.store.session() as session:
                owner = _oidc_principal(session, identity, self.settings)
                _check_alive(owner, identity_issued(identity))
                return to_principal(session, owner, via="oidc", groups=identity.groups)
        raise _refused("malformed")

    def _audit_failure(self, err: AuthenticationError, token: str | None, address: str) -> None:
        details: dict[str, object] = {"reason": _reason(err), "address": address}
        if token is not None and self.fingerprint_key:
            details["token"] = audit.fingerprint(token, self.fingerprint_key)
        try:
            with self.store.session() as session:
                audit.append(
                    session,
                    actor="anonymous",
                    action="auth.token_refused",
                    folder=INSTALL_FOLDER,
                    resource="api",
                    outcome="denied",
                    details=details,
                )
        except AuditError:
            log.exception("cannot audit a refused token")


def identity_issued(identity: OidcIdentity) -> datetime | None:
    """When the IdP issued the token (its ``iat``), if it said."""
    iat = identity.claims.get("iat")
    return datetime.fromtimestamp(iat, UTC) if isinstance(iat, int | float) else None


def _refused(reason: str) -> AuthenticationError:
    return LoginRefused(CREDENTIALS_REFUSED, reason=reason)


def _check_alive(owner: PrincipalRow, issued: datetime | None) -> None:
    if not owner.active:
        raise _refused("inactive")
    if issued is not None and issued < owner.tokens_valid_after.replace(microsecond=0):
        raise _refused("revoked")


def _oidc_principal(
    session: Session, identity: OidcIdentity, settings: IdentitySettings
) -> PrincipalRow:
    """The principal of an IdP subject, provisioned on first sight (just in time)."""
    row = session.scalars(
        select(PrincipalRow).where(
            PrincipalRow.source == "oidc", PrincipalRow.external_id == identity.subject
        )
    ).first()
    if row is not None:
        return row
    wanted = f"oidc.{identity.username or identity.subject}"
    if not USERNAME.fullmatch(wanted) or find_by_username(session, wanted) is not None:
        wanted = "oidc." + hashlib.sha256(identity.subject.encode()).hexdigest()[:32]
    return create_user(
        session,
        username=wanted,
        password=None,
        email=identity.email,
        source="oidc",
        external_id=identity.subject,
        settings=settings,
    )
