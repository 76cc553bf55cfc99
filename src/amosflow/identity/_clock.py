"""The one clock of the identity package: aware UTC times, or the caller's own ``now``."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now(now: datetime | None) -> datetime:
    """``now`` (which must be timezone-aware) or the current UTC time."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("pass a timezone-aware datetime")
    return now
