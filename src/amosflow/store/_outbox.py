"""The transactional outbox: events written with the change they announce, published later."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import delete, select, update

from amosflow.store._tables import OutboxEntry
from amosflow.store._types import utcnow

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from sqlalchemy.orm import Session

MAX_ERROR_CHARS = 2000


class OutboxRow(BaseModel):
    """One event waiting for (or done with) publication."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: int
    subject: str
    event: dict[str, Any]
    created_at: AwareDatetime
    published_at: AwareDatetime | None = None
    attempts: int = 0
    last_error: str | None = None


def enqueue(session: Session, subject: str, event: Mapping[str, Any]) -> int:
    """Queue ``event`` for ``subject`` inside the caller's transaction and return its id.

    Call it in the same session as the state change it announces: both commit or neither does.
    """
    entry = OutboxEntry(subject=subject, event=dict(event), created_at=utcnow(), attempts=0)
    session.add(entry)
    session.flush()
    return entry.id


def claim_pending(session: Session, limit: int) -> list[OutboxRow]:
    """Lock and return up to ``limit`` unpublished events, oldest first.

    On PostgreSQL the rows stay locked (``FOR UPDATE SKIP LOCKED``) until the session ends, so
    concurrent relays claim disjoint rows; SQLite's single writer gives the same guarantee.
    """
    query = (
        select(OutboxEntry)
        .where(OutboxEntry.published_at.is_(None))
        .order_by(OutboxEntry.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [OutboxRow.model_validate(row) for row in session.scalars(query)]


def mark_published(session: Session, ids: Sequence[int]) -> int:
    """Record that the events ``ids`` reached the bus; return how many rows changed."""
    if not ids:
        return 0
    statement = (
        update(OutboxEntry)
        .where(OutboxEntry.id.in_(ids), OutboxEntry.published_at.is_(None))
        .values(published_at=utcnow())
    )
    return session.execute(statement).rowcount  # type: ignore[attr-defined,no-any-return]


def mark_failed(session: Session, id_: int, error: str) -> None:
    """Count a failed publication attempt of ``id_`` and keep the reason for operators."""
    statement = (
        update(OutboxEntry)
        .where(OutboxEntry.id == id_)
        .values(attempts=OutboxEntry.attempts + 1, last_error=error[:MAX_ERROR_CHARS])
    )
    session.execute(statement)


def prune_published(session: Session, before: datetime) -> int:
    """Delete events published before ``before``; return how many went."""
    statement = delete(OutboxEntry).where(OutboxEntry.published_at < before)
    return session.execute(statement).rowcount  # type: ignore[attr-defined,no-any-return]


__all__ = [
    "OutboxRow",
    "claim_pending",
    "enqueue",
    "mark_failed",
    "mark_published",
    "prune_published",
]
