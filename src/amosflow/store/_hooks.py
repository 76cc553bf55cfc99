"""Webhook delivery ids already accepted, so a replayed delivery never starts a second run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite

from amosflow.store._tables import WebhookDelivery
from amosflow.store._types import utcnow

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session


def _insert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(WebhookDelivery)


def remember_delivery(session: Session, hook: str, delivery_id: str, run_id: str) -> bool:
    """Record a delivery of ``hook``; return False when that delivery id was seen before."""
    statement = (
        _insert(session)
        .values(hook=hook, delivery_id=delivery_id, run_id=run_id, received_at=utcnow())
        .on_conflict_do_nothing(index_elements=["hook", "delivery_id"])
        .returning(WebhookDelivery.hook)
    )
    # RETURNING, not rowcount: drivers disagree on rowcount after ON CONFLICT DO NOTHING.
    return session.execute(statement).first() is not None


def prune_deliveries(session: Session, before: datetime) -> int:
    """Forget deliveries received before ``before`` (older than any replay window)."""
    statement = delete(WebhookDelivery).where(WebhookDelivery.received_at < before)
    return session.execute(statement).rowcount  # type: ignore[attr-defined,no-any-return]


__all__ = ["prune_deliveries", "remember_delivery"]
