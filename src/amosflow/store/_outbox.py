"""The transactional outbox: events written with the change they announce, published later."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlalchemy import delete, insert, select, update

from amosflow.store._tables import OutboxEntry
from amosflow.store._types import utcnow

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import datetime

    from sqlalchemy import Table
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


# One compiled statement on the table, parameters bound per call: an ORM object flushed per
# row (or values baked into each statement) cost ~0.3 ms a row, and a run's end queues an
# event per step.
_TABLE = cast("Table", OutboxEntry.__table__)
_INSERT = insert(_TABLE)


def _row(subject: str, event: Mapping[str, Any]) -> dict[str, Any]:
    return {"subject": subject, "event": dict(event), "created_at": utcnow(), "attempts": 0}


def enqueue(session: Session, subject: str, event: Mapping[str, Any]) -> int:
    """Queue ``event`` for ``subject`` inside the caller's transaction and return its id.

    Call it in the same session as the state change it announces: both commit or neither does.
    """
    inserted = session.execute(_INSERT, _row(subject, event))
    return int(inserted.inserted_primary_key[0])  # type: ignore[attr-defined]


def enqueue_many(session: Session, events: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
    """Queue ``(subject, event)`` pairs in order, in one statement, inside the caller's transaction.

    Ids follow the order given, so the relay publishes them in that order.
    """
    rows = [_row(subject, event) for subject, event in events]
    if rows:
        session.execute(_INSERT, rows)


def claim_pending(session: Session, limit: int) -> list[OutboxRow]:
    """Lock and return up to ``limit`` unpublished events, oldest first.

    On PostgreSQL the rows stay locked (``FOR UPDATE SKIP LOCKED``) until the session ends, so
    concurrent relays claim disjoint rows; SQLite's single writer gives the same guarantee.
    Plain rows, not ORM objects: the relay claims after every run, and the ORM's identity map
    cost more than the query.
    """
    query = (
        select(*_TABLE.columns)
        .where(_TABLE.c.published_at.is_(None))
        .order_by(_TABLE.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [OutboxRow.model_validate(dict(row)) for row in session.execute(query).mappings()]


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
