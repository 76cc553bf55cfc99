"""Opaque keyset cursors: stable pages even while new rows arrive."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import and_, or_

from amosflow.errors import Diagnostic, ValidationFailedError

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Select
    from sqlalchemy.orm import InstrumentedAttribute, Session

T = TypeVar("T")
MAX_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of results; ``next_cursor`` is None on the last page."""

    items: list[T]
    next_cursor: str | None = None


def _invalid(message: str) -> ValidationFailedError:
    return ValidationFailedError([Diagnostic("/cursor", message)])


def check_limit(limit: int) -> int:
    """Return ``limit`` when it is a sane page size, so a client cannot ask for everything."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailedError([Diagnostic("/limit", f"must be between 1 and {MAX_LIMIT}")])
    return limit


def encode_cursor(created_at: datetime, key: str) -> str:
    """Encode the sort key of the last row shown as an opaque URL-safe token."""
    raw = json.dumps([created_at.isoformat(), key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Decode a token from ``encode_cursor``; anything else is a validation error, not a 500."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, key = json.loads(raw)
        created_at = datetime.fromisoformat(stamp)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise _invalid("not a cursor this server issued") from exc
    if not isinstance(key, str) or created_at.tzinfo is None:
        raise _invalid("not a cursor this server issued")
    return created_at, key


def newest_first(
    session: Session,
    query: Select[Any],
    columns: tuple[InstrumentedAttribute[datetime], InstrumentedAttribute[str]],
    *,
    cursor: str | None,
    limit: int,
    record: Callable[[Any], T],
) -> Page[T]:
    """A page of ``query``'s rows, newest first, after ``cursor``; ties broken by the key.

    Keyset paging on (created_at, key) stays stable while new rows arrive, where an offset
    would skip or repeat rows.
    """
    created_at, key = columns
    if cursor is not None:
        after_at, after_key = decode_cursor(cursor)
        query = query.where(
            or_(created_at < after_at, and_(created_at == after_at, key < after_key))
        )
    query = query.order_by(created_at.desc(), key.desc()).limit(limit + 1)
    rows = list(session.scalars(query))
    items = [record(row) for row in rows[:limit]]
    if len(rows) <= limit:
        return Page(items)
    last = rows[limit - 1]
    return Page(items, encode_cursor(getattr(last, created_at.key), getattr(last, key.key)))
