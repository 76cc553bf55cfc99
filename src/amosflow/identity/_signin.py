"""Signing in with a password or a client secret, with a failure counter and a lockout.

Every function takes the SQLAlchemy ``Session`` of one ``Store.session()``; the caller owns
the transaction. The one exception is a refused sign-in through ``authenticate_password`` or
``authenticate_client``: it commits the session before raising, because the failure counter
that drives the lockout must survive the rollback the error would otherwise cause. Callers
that want to own that commit too use ``attempt_password`` / ``attempt_client``, which
return the outcome instead of raising.

A refusal always carries the same message towards the caller, whatever went wrong: telling
"no such user" from "wrong password" or "locked" would let anyone list the accounts. The
real reason travels on the exception (``LoginRefused.reason``) for the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from amosflow.errors import AuthenticationError
from amosflow.identity._clock import utc_now
from amosflow.identity._passwords import hash_secret, needs_rehash, verify_secret
from amosflow.identity._users import USERNAME, find_by_username
from amosflow.store import PrincipalRow

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session

    from amosflow.config import IdentitySettings

#: The one answer to every refused password sign-in.
LOGIN_REFUSED = "invalid username or password"
#: The one answer to every refused client-credentials grant.
CLIENT_REFUSED = "invalid client credentials"


class LoginRefused(AuthenticationError):  # noqa: N818 - a refusal, named as the API says it
    """A refused credential; the message is generic, ``reason`` is the truth for the audit.

    Reasons: ``unknown`` (no such account), ``wrong_kind`` (a service account at the password
    sign-in or a user at the client grant), ``no_secret`` (an account that signs in through
    the IdP), ``locked``, ``inactive``, ``bad_secret``; the token verifiers add theirs.
    ``principal_id`` names the account when there is one, ``locked_now`` tells that this very
    failure locked it.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        principal_id: str | None = None,
        locked_now: bool = False,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.principal_id = principal_id
        self.locked_now = locked_now


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """The outcome of one sign-in attempt: the account, or why it was refused."""

    principal: PrincipalRow | None
    refusal: LoginRefused | None = None

    @property
    def ok(self) -> bool:
        """True when the credentials were accepted."""
        return self.refusal is None and self.principal is not None

    def unwrap(self) -> PrincipalRow:
        """The accepted account; raises the refusal otherwise."""
        if self.refusal is not None:
            raise self.refusal
        if self.principal is None:  # pragma: no cover - the constructors never do this
            raise LoginRefused(LOGIN_REFUSED, reason="unknown")
        return self.principal


def _refuse(message: str, reason: str, row: PrincipalRow | None) -> LoginAttempt:
    return LoginAttempt(
        None, LoginRefused(message, reason=reason, principal_id=row.id if row else None)
    )


def _unusable(row: PrincipalRow | None, kind: str) -> str | None:
    """Why ``row`` can never sign in this way, or None."""
    if row is None:
        return "unknown"
    if row.kind != kind:
        return "wrong_kind"
    if not row.password_hash:
        return "no_secret"
    return None


def _blocked(row: PrincipalRow, now: datetime) -> str | None:
    """Why ``row`` may not sign in right now, whatever the secret, or None."""
    if row.locked_until is not None and row.locked_until > now:
        return "locked"
    if not row.active:
        return "inactive"
    return None


def _attempt(
    session: Session,
    row: PrincipalRow | None,
    secret: str,
    *,
    kind: str,
    message: str,
    settings: IdentitySettings,
    now: datetime,
) -> LoginAttempt:
    """Check ``secret`` against ``row`` and record the outcome on it (not committed).

    The hash is verified in every case, also for an unknown, locked or inactive account,
    so that the time a refusal takes says nothing about which case it was.
    """
    stored = row.password_hash if row is not None and row.kind == kind else None
    matched = verify_secret(stored, secret)
    reason = _unusable(row, kind)
    if reason is None and row is not None:
        # Re-read under a row lock (PostgreSQL; SQLite's writer lock serialises anyway) so
        # that concurrent failures count one by one instead of overwriting each other.
        session.refresh(row, with_for_update=True)
        reason = _blocked(row, now)
        # A secret changed since it was verified counts as wrong: never rehash a stale one.
        matched = matched and row.password_hash == stored
    if reason is not None or row is None:
        return _refuse(message, reason or "unknown", row)
    if not matched:
        # The counter is not reset when a lock expires: the next failure locks again at once.
        row.failed_logins += 1
        locked_now = row.failed_logins >= settings.lockout_threshold
        if locked_now:
            row.locked_until = now + timedelta(seconds=settings.lockout_seconds)
        session.flush()
        refusal = LoginRefused(
            message, reason="bad_secret", principal_id=row.id, locked_now=locked_now
        )
        return LoginAttempt(None, refusal)
    row.failed_logins = 0
    row.locked_until = None
    if row.password_hash and needs_rehash(row.password_hash):
        row.password_hash = hash_secret(secret)
    session.flush()
    return LoginAttempt(row)


def attempt_password(
    session: Session,
    username: str,
    password: str,
    *,
    settings: IdentitySettings,
    now: datetime | None = None,
) -> LoginAttempt:
    """Check a user's password, recording the failure or the success; never raises for it.

    The caller commits the session in both cases: the failure counter and the lock live in
    it. A success resets the counter and upgrades an outdated hash.
    """
    row = find_by_username(session, username) if USERNAME.fullmatch(username) else None
    return _attempt(
        session,
        row,
        password,
        kind="user",
        message=LOGIN_REFUSED,
        settings=settings,
        now=utc_now(now),
    )


def _settle(session: Session, attempt: LoginAttempt) -> PrincipalRow:
    """The accepted account; a refusal is committed (counter and lock) before it is raised."""
    if attempt.refusal is not None:
        session.commit()
        raise attempt.refusal
    return attempt.unwrap()


def authenticate_password(
    session: Session,
    username: str,
    password: str,
    *,
    settings: IdentitySettings,
    now: datetime | None = None,
) -> PrincipalRow:
    """Return the user whose password this is; raise LoginRefused otherwise.

    A refusal commits ``session`` before raising, so the failure counter and the lock
    survive the rollback the error causes in ``Store.session()``. Use a session of its own
    for the sign-in (anything else pending in it is committed along).
    """
    return _settle(
        session, attempt_password(session, username, password, settings=settings, now=now)
    )


def attempt_client(
    session: Session,
    client_id: str,
    client_secret: str,
    *,
    settings: IdentitySettings,
    now: datetime | None = None,
) -> LoginAttempt:
    """Check a service account's client secret (``client_id`` is its id); never raises for it."""
    row = session.get(PrincipalRow, client_id) if 0 < len(client_id) <= 64 else None  # noqa: PLR2004
    return _attempt(
        session,
        row,
        client_secret,
        kind="service",
        message=CLIENT_REFUSED,
        settings=settings,
        now=utc_now(now),
    )


def authenticate_client(
    session: Session,
    client_id: str,
    client_secret: str,
    *,
    settings: IdentitySettings,
    now: datetime | None = None,
) -> PrincipalRow:
    """Return the service account of an OAuth2 client-credentials grant; LoginRefused otherwise.

    The same lockout as for passwords applies; a refusal commits ``session`` before raising.
    """
    return _settle(
        session, attempt_client(session, client_id, client_secret, settings=settings, now=now)
    )
