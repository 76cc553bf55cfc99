"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, Dialect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

#: JSON everywhere, stored as JSONB on PostgreSQL so it can be indexed and queried.
JSONValue = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime, the only kind the store keeps."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always written and read as aware UTC, whatever the backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes, since SQLite would silently drop the offset."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the store keeps timezone-aware datetimes only")
        utc = value.astimezone(UTC)
        # SQLite stores text without an offset; normalising to naive UTC keeps it sortable.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002 - SQLAlchemy's signature
    ) -> datetime | None:
        """Hand back aware UTC so callers never compare naive and aware values."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
