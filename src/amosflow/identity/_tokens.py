"""Personal API tokens: ``amos_pat_<id>_<secret>``, shown once, kept only as a SHA-256.

The secret part carries 256 random bits, so a plain SHA-256 of the whole token cannot be
guessed back from a copy of the database, and looking it up by its hash (a unique index) is
as good as a constant-time comparison: the lookup's timing depends on a hash the caller
cannot steer. The visible ``<id>`` lets an owner tell their tokens apart in listings.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from amosflow.errors import ConflictError, Diagnostic, NotFoundError, ValidationFailedError
from amosflow.identity._clock import utc_now
from amosflow.identity._policy import PERMISSIONS
from amosflow.identity._signin import LoginRefused
from amosflow.identity._users import get_principal
from amosflow.store import ApiTokenRow, PrincipalRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from amosflow.config import IdentitySettings

PREFIX = "amos_pat_"
#: The one answer to every refused API token.
TOKEN_REFUSED = "invalid API token"  # noqa: S105 - a message, not a secret
#: ``amos_pat_`` + 16 hex digits + ``_`` + the URL-safe base64 of 32 random bytes.
_SHAPE = re.compile(r"amos_pat_([0-9a-f]{16})_[A-Za-z0-9_-]{43}")
#: ``last_used_at`` is written at most this often, so a busy token is not a write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_NAME_LENGTH = 100


def token_hash(plaintext: str) -> str:
    """The SHA-256 (hex) under which a token is stored and looked up."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _scope_problems(scopes: list[str]) -> list[Diagnostic]:
    return [
        Diagnostic(f"/scopes/{index}", f"unknown permission {scope!r}")
        for index, scope in enumerate(scopes)
        if scope not in PERMISSIONS
    ]


def issue_api_token(
    session: Session,
    *,
    principal_id: str,
    name: str,
    scopes: list[str] | None,
    expires_in_days: int | None,
    settings: IdentitySettings,
    now: datetime | None = None,
) -> tuple[ApiTokenRow, str]:
    """Issue a token for an active principal; return its row and the plaintext, shown once.

    ``scopes`` (permission names) narrow what the owner's roles allow; None keeps them all.
    The lifetime is capped at ``settings.api_token_max_days`` (None asks for that maximum):
    a token that never expires is a credential nobody remembers to revoke.
    """
    at = utc_now(now)
    problems: list[Diagnostic] = []
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        problems.append(Diagnostic("/name", f"1 to {MAX_NAME_LENGTH} characters"))
    if scopes is not None:
        problems.extend(_scope_problems(scopes))
    if expires_in_days is not None and expires_in_days < 1:
        problems.append(Diagnostic("/expires_in_days", "at least 1 day"))
    if problems:
        raise ValidationFailedError(problems)
    owner = get_principal(session, principal_id)
    if not owner.active:
        raise ConflictError(f"{owner.username!r} is deactivated")
    days = settings.api_token_max_days
    if expires_in_days is not None:
        days = min(expires_in_days, days)
    token_id = secrets.token_hex(8)
    plaintext = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    row = ApiTokenRow(
        id=token_id,
        principal_id=owner.id,
        name=name,
        token_hash=token_hash(plaintext),
        scopes=list(dict.fromkeys(scopes)) if scopes is not None else None,
        expires_at=at + timedelta(days=days),
        revoked_at=None,
        last_used_at=None,
        created_at=at,
    )
    session.add(row)
    session.flush()
    return row, plaintext


def _refused(reason: str, principal_id: str | None = None) -> LoginRefused:
    return LoginRefused(TOKEN_REFUSED, reason=reason, principal_id=principal_id)


def authenticate_api_token(
    session: Session, plaintext: str, *, now: datetime | None = None
) -> tuple[ApiTokenRow, PrincipalRow]:
    """Return the token and its owner; raise LoginRefused (an AuthenticationError) otherwise.

    Reasons: ``malformed``, ``unknown``, ``revoked``, ``expired``, ``inactive`` (the owner is
    deactivated or gone), ``invalidated`` (the owner's credentials were reset after the
    token was issued). Records ``last_used_at`` at most once a minute.
    """
    at = utc_now(now)
    shape = _SHAPE.fullmatch(plaintext)
    if shape is None:
        raise _refused("malformed")
    row = session.scalars(
        select(ApiTokenRow).where(ApiTokenRow.token_hash == token_hash(plaintext))
    ).first()
    if row is None or row.id != shape.group(1):
        raise _refused("unknown")
    if row.revoked_at is not None:
        raise _refused("revoked", row.principal_id)
    if row.expires_at is not None and row.expires_at <= at:
        raise _refused("expired", row.principal_id)
    owner = session.get(PrincipalRow, row.principal_id)
    if owner is None or not owner.active:
        raise _refused("inactive", row.principal_id)
    if owner.tokens_valid_after > row.created_at:
        raise _refused("invalidated", row.principal_id)
    if row.last_used_at is None or at - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = at
        session.flush()
    return row, owner


def list_api_tokens(session: Session, principal_id: str) -> list[ApiTokenRow]:
    """The tokens of one principal, oldest first (metadata only: there is no plaintext)."""
    query = (
        select(ApiTokenRow)
        .where(ApiTokenRow.principal_id == principal_id)
        .order_by(ApiTokenRow.created_at, ApiTokenRow.id)
    )
    return list(session.scalars(query))


def revoke_api_token(
    session: Session, principal_id: str, token_id: str, *, now: datetime | None = None
) -> ApiTokenRow:
    """Revoke one of ``principal_id``'s tokens (again is a no-op); NotFoundError otherwise.

    Someone else's token answers exactly like a token that does not exist.
    """
    row = session.get(ApiTokenRow, token_id)
    if row is None or row.principal_id != principal_id:
        raise NotFoundError(f"API token {token_id!r} not found")
    if row.revoked_at is None:
        row.revoked_at = utc_now(now)
        session.flush()
    return row
