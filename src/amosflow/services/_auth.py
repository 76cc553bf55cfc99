"""Getting credentials and managing one's own: sign-in, client credentials, API tokens, setup.

Every attempt to sign in is audited in the transaction that records its failure counter, so
the lockout and its record commit together; a refusal never says which part was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amosflow import audit, identity
from amosflow.errors import AuthenticationError, Diagnostic, ValidationFailedError
from amosflow.identity import CREDENTIALS_REFUSED, LOGIN_REFUSED, actor_of
from amosflow.store import INSTALL_FOLDER

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session

    from amosflow.identity import Authenticator, IdentitySettings, LoginAttempt, Principal
    from amosflow.store import ApiTokenRow, Store


@dataclass(frozen=True)
class SessionToken:
    """A session token just issued, and when it expires."""

    token: str
    expires_at: datetime
    expires_in: int


def _issue(authenticator: Authenticator, principal_id: str) -> SessionToken:
    token, expires_at = authenticator.signer.issue(principal_id)
    return SessionToken(token, expires_at, authenticator.settings.session_ttl_seconds)


def _record_attempt(
    session: Session, action: str, attempt: LoginAttempt, details: dict[str, Any]
) -> None:
    """Audit a sign-in in the transaction that records its failure counter."""
    if attempt.ok and attempt.principal is not None:
        actor = actor_of(attempt.principal.kind, attempt.principal.username)
        audit.append(
            session,
            folder=INSTALL_FOLDER,
            actor=actor,
            action=action,
            resource="auth",
            details=details,
        )
        return
    refusal = attempt.refusal
    details = details | {"reason": refusal.reason if refusal else "unknown"}
    if refusal is not None and refusal.locked_now:
        details["locked"] = True
    audit.append(
        session,
        folder=INSTALL_FOLDER,
        actor="anonymous",
        action=action,
        resource="auth",
        outcome="denied",
        details=details,
    )


def sign_in(
    store: Store, authenticator: Authenticator, username: str, password: str, *, address: str
) -> SessionToken:
    """A session token for a local user's password; AuthenticationError when refused."""
    details = {"username": username, "address": address}
    with store.session() as session:
        attempt = identity.attempt_password(
            session, username, password, settings=authenticator.settings
        )
        _record_attempt(session, "auth.login", attempt, details)
    if attempt.principal is None or not attempt.ok:
        raise AuthenticationError(LOGIN_REFUSED)
    return _issue(authenticator, attempt.principal.id)


def client_credentials(
    store: Store, authenticator: Authenticator, client_id: str, secret: str, *, address: str
) -> SessionToken:
    """A session token for a service account's client secret; AuthenticationError when refused."""
    details = {"client_id": client_id[:200], "address": address}
    with store.session() as session:
        attempt = identity.attempt_client(
            session, client_id, secret, settings=authenticator.settings
        )
        _record_attempt(session, "auth.client_token", attempt, details)
    if attempt.principal is None or not attempt.ok:
        raise AuthenticationError(CREDENTIALS_REFUSED)
    return _issue(authenticator, attempt.principal.id)


def list_tokens(store: Store, owner: Principal) -> list[ApiTokenRow]:
    """``owner``'s personal API tokens (metadata; the tokens themselves are never kept)."""
    with store.session(read_only=True) as session:
        return identity.list_api_tokens(session, owner.id)


def create_token(
    store: Store,
    owner: Principal,
    *,
    name: str,
    scopes: list[str] | None,
    expires_in_days: int | None,
    settings: IdentitySettings,
) -> tuple[ApiTokenRow, str]:
    """Issue a personal API token, audited; returns it with the only copy of the token.

    A token can only narrow what its owner may do, and a scoped token cannot mint a wider one.
    """
    wanted = set(scopes) if scopes is not None else None
    if owner.scopes is not None and (wanted is None or not wanted <= owner.scopes):
        raise ValidationFailedError(
            [Diagnostic("/scopes", "cannot exceed the scopes of the token in use")]
        )
    with store.session() as session:
        row, plaintext = identity.issue_api_token(
            session,
            principal_id=owner.id,
            name=name,
            scopes=scopes,
            expires_in_days=expires_in_days,
            settings=settings,
        )
        audit.append(
            session,
            folder=INSTALL_FOLDER,
            actor=owner.actor,
            action="tokens.create",
            resource=f"tokens/{row.id}",
            details={"name": name, "scopes": scopes},
        )
        return row, plaintext


def revoke_token(store: Store, owner: Principal, token_id: str) -> ApiTokenRow:
    """Revoke one of ``owner``'s tokens, audited; it stops working at once."""
    with store.session() as session:
        row = identity.revoke_api_token(session, owner.id, token_id)
        audit.append(
            session,
            folder=INSTALL_FOLDER,
            actor=owner.actor,
            action="tokens.revoke",
            resource=f"tokens/{token_id}",
            details={},
        )
        return row


def _record(store: Store, action: str, actor: str, outcome: str, details: dict[str, Any]) -> None:
    with store.session() as session:
        audit.append(
            session,
            folder=INSTALL_FOLDER,
            actor=actor,
            action=action,
            resource="auth",
            outcome=outcome,
            details=details,
        )


def first_admin(
    store: Store,
    settings: IdentitySettings,
    *,
    token: str,
    username: str,
    password: str,
    address: str,
) -> Principal:
    """Create the first administrator with the one-time setup token; audited as `auth.setup`.

    Once setup is complete, and for a wrong token (audited as denied), the answer is the
    generic refusal.
    """
    with store.session() as session:
        if identity.setup_complete(session):
            raise AuthenticationError(CREDENTIALS_REFUSED)
    if not identity.consume_setup_token(settings, token):
        _record(store, "auth.setup", "anonymous", "denied", {"address": address})
        raise AuthenticationError(CREDENTIALS_REFUSED)
    with store.session() as session:
        row = identity.create_first_admin(
            session, username=username, password=password, settings=settings
        )
        audit.append(
            session,
            folder=INSTALL_FOLDER,
            actor=actor_of("user", row.username),
            action="auth.setup",
            resource=f"principals/{row.id}",
            details={"address": address},
        )
        return identity.to_principal(session, row, via="session")
