"""Users and service accounts in the store: creating, finding and managing them.

Every function takes the SQLAlchemy ``Session`` of one ``Store.session()``; the caller owns
the transaction.
"""

from __future__ import annotations

import re
import secrets
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from amosflow.errors import ConflictError, Diagnostic, NotFoundError, ValidationFailedError
from amosflow.identity._clock import utc_now
from amosflow.identity._passwords import check_password_policy, hash_secret
from amosflow.store import PRINCIPAL_SOURCES, ApiTokenRow, PrincipalRow

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session

    from amosflow.config import IdentitySettings

#: What a username may look like: no spaces, no look-alike punctuation, fits the column.
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,199}")


def _username_problems(username: str) -> list[Diagnostic]:
    if USERNAME.fullmatch(username) is None:
        return [
            Diagnostic(
                "/username",
                "a username is 1 to 200 letters, digits or . _ @ - and starts with a letter "
                "or digit",
            )
        ]
    return []


def _ensure_username_free(session: Session, username: str) -> None:
    """Refuse a username that exists already, also in another letter case (look-alikes)."""
    taken = session.scalar(
        select(PrincipalRow.username).where(func.lower(PrincipalRow.username) == username.lower())
    )
    if taken is not None:
        raise ConflictError(f"the username {username!r} is taken")


def _insert(session: Session, row: PrincipalRow) -> PrincipalRow:
    """Insert ``row`` in a savepoint so a lost race on the username is a ConflictError."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        raise ConflictError(f"the username {row.username!r} is taken") from exc
    return row


def create_user(
    session: Session,
    *,
    username: str,
    password: str | None,
    display_name: str = "",
    email: str | None = None,
    source: str = "local",
    external_id: str | None = None,
    settings: IdentitySettings,
) -> PrincipalRow:
    """Create a user; ``password=None`` makes one who can only sign in through the IdP.

    Raises ValidationFailedError for a bad username, source or weak password and
    ConflictError when the username is taken.
    """
    problems = _username_problems(username)
    if source not in PRINCIPAL_SOURCES:
        problems.append(Diagnostic("/source", f"the source must be one of {PRINCIPAL_SOURCES}"))
    if len(display_name) > 200:  # noqa: PLR2004 - the column's length
        problems.append(Diagnostic("/display_name", "at most 200 characters"))
    if email is not None and (len(email) > 320 or "@" not in email):  # noqa: PLR2004
        problems.append(Diagnostic("/email", "not an email address"))
    if external_id is not None and len(external_id) > 200:  # noqa: PLR2004
        problems.append(Diagnostic("/external_id", "at most 200 characters"))
    if password is not None:
        try:
            check_password_policy(password, settings, username=username)
        except ValidationFailedError as err:
            problems.extend(err.diagnostics)
    if problems:
        raise ValidationFailedError(problems)
    _ensure_username_free(session, username)
    now = utc_now(None)
    return _insert(
        session,
        PrincipalRow(
            id=uuid.uuid4().hex,
            kind="user",
            username=username,
            display_name=display_name,
            email=email,
            source=source,
            external_id=external_id,
            password_hash=hash_secret(password) if password is not None else None,
            active=True,
            failed_logins=0,
            locked_until=None,
            tokens_valid_after=now,
            created_at=now,
            updated_at=now,
        ),
    )


def _new_client_secret() -> str:
    return secrets.token_urlsafe(32)


def create_service_account(
    session: Session,
    *,
    name: str,
    settings: IdentitySettings,  # noqa: ARG001 - the same signature as create_user
) -> tuple[PrincipalRow, str]:
    """Create a service account; return it and its client secret, which is shown only now.

    The client id is the account's ``id``. Only the argon2id hash of the secret is kept.
    """
    problems = _username_problems(name)
    if problems:
        raise ValidationFailedError(problems)
    _ensure_username_free(session, name)
    secret = _new_client_secret()
    now = utc_now(None)
    row = _insert(
        session,
        PrincipalRow(
            id=uuid.uuid4().hex,
            kind="service",
            username=name,
            display_name=name,
            email=None,
            source="local",
            external_id=None,
            password_hash=hash_secret(secret),
            active=True,
            failed_logins=0,
            locked_until=None,
            tokens_valid_after=now,
            created_at=now,
            updated_at=now,
        ),
    )
    return row, secret


def get_principal(session: Session, principal_id: str) -> PrincipalRow:
    """The principal with this id; NotFoundError otherwise."""
    row = session.get(PrincipalRow, principal_id)
    if row is None:
        raise NotFoundError(f"principal {principal_id!r} not found")
    return row


def find_by_username(session: Session, username: str) -> PrincipalRow | None:
    """The principal with exactly this username, or None."""
    return session.scalars(select(PrincipalRow).where(PrincipalRow.username == username)).first()


def rename_user(session: Session, principal_id: str, username: str) -> PrincipalRow:
    """Give a user a new username (an IdP may change it); the same rules as creating one.

    ValidationFailedError for a bad username, ConflictError when another principal holds it
    in any letter case. A change of letter case alone is allowed.
    """
    row = get_principal(session, principal_id)
    if username == row.username:
        return row
    problems = _username_problems(username)
    if problems:
        raise ValidationFailedError(problems)
    if username.lower() != row.username.lower():
        _ensure_username_free(session, username)
    row.username = username
    row.updated_at = utc_now(None)
    session.flush()
    return row


def list_principals(session: Session) -> list[PrincipalRow]:
    """Every principal, by username."""
    return list(session.scalars(select(PrincipalRow).order_by(PrincipalRow.username)))


def count_principals(session: Session, *, kind: str | None = None) -> int:
    """How many principals (of one ``kind``) there are; a fresh install has none at all."""
    query = select(func.count()).select_from(PrincipalRow)
    if kind is not None:
        query = query.where(PrincipalRow.kind == kind)
    return session.scalar(query) or 0


def set_password(
    session: Session, principal_id: str, password: str, *, settings: IdentitySettings
) -> PrincipalRow:
    """Give a local user a new password; also clears a lockout, as an administrator reset does.

    Raises ConflictError for a service account (it has a client secret) or a user who signs
    in through the IdP (a local password would bypass the IdP).
    """
    row = get_principal(session, principal_id)
    if row.kind != "user":
        raise ConflictError(f"{row.username!r} is a service account; rotate its client secret")
    if row.source != "local":
        raise ConflictError(f"{row.username!r} signs in through the identity provider")
    check_password_policy(password, settings, username=row.username)
    row.password_hash = hash_secret(password)
    row.failed_logins = 0
    row.locked_until = None
    row.updated_at = utc_now(None)
    session.flush()
    return row


def rotate_client_secret(session: Session, principal_id: str) -> str:
    """Give a service account a new client secret and return it; the old one stops working."""
    row = get_principal(session, principal_id)
    if row.kind != "service":
        raise ConflictError(f"{row.username!r} is not a service account")
    secret = _new_client_secret()
    row.password_hash = hash_secret(secret)
    row.failed_logins = 0
    row.locked_until = None
    row.updated_at = utc_now(None)
    session.flush()
    return secret


def deactivate(session: Session, principal_id: str, *, now: datetime | None = None) -> PrincipalRow:
    """Switch an account off and kill every credential it holds, at once.

    Sessions die through ``tokens_valid_after``; every API token is revoked as well, so
    reactivating the account does not bring any of them back.
    """
    at = utc_now(now)
    row = get_principal(session, principal_id)
    row.active = False
    row.tokens_valid_after = at
    row.updated_at = at
    session.execute(
        update(ApiTokenRow)
        .where(ApiTokenRow.principal_id == principal_id, ApiTokenRow.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    session.flush()
    return row


def reactivate(session: Session, principal_id: str, *, now: datetime | None = None) -> PrincipalRow:
    """Switch an account back on, with a clean failure counter; its old tokens stay dead."""
    row = get_principal(session, principal_id)
    row.active = True
    row.failed_logins = 0
    row.locked_until = None
    row.updated_at = utc_now(now)
    session.flush()
    return row
