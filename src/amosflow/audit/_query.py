"""Read the audit trail: filtered pages for the auditor's view, JSON Lines for export."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, select

from amosflow.audit._canonical import canonical_value, stamp
from amosflow.audit._records import AuditRecord
from amosflow.errors import Diagnostic, ValidationFailedError
from amosflow.store import AuditRow, Page, check_limit, decode_cursor, encode_cursor

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime
    from typing import TextIO

    from sqlalchemy.orm import Session

_EXPORT_PAGE = 1000


def _filtered(
    query: Select[tuple[AuditRow]],
    *,
    actor: str | None = None,
    action: str | None = None,
    resource: str | None = None,
    folder: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Select[tuple[AuditRow]]:
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise ValidationFailedError([Diagnostic(f"/{name}", "needs a time zone offset")])
    for column, value in (
        (AuditRow.actor, actor),
        (AuditRow.action, action),
        (AuditRow.resource, resource),
        (AuditRow.folder, folder),
    ):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(AuditRow.at >= since)
    if until is not None:
        query = query.where(AuditRow.at < until)
    return query


def _cursor_seq(cursor: str) -> int:
    _, key = decode_cursor(cursor)
    try:
        return int(key)
    except ValueError:
        raise ValidationFailedError(
            [Diagnostic("/cursor", "not a cursor this server issued")]
        ) from None


def query(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    resource: str | None = None,
    folder: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[AuditRecord]:
    """List records newest first; filters combine with AND, ``since`` inclusive, ``until`` not."""
    check_limit(limit)
    statement = _filtered(
        select(AuditRow),
        actor=actor,
        action=action,
        resource=resource,
        folder=folder,
        since=since,
        until=until,
    )
    if cursor is not None:
        statement = statement.where(AuditRow.seq < _cursor_seq(cursor))
    statement = statement.order_by(AuditRow.seq.desc()).limit(limit + 1)
    rows = [AuditRecord.model_validate(row) for row in session.scalars(statement)]
    if len(rows) <= limit:
        return Page(rows)
    last = rows[limit - 1]
    return Page(rows[:limit], encode_cursor(last.at, str(last.seq)))


def json_line(record: AuditRecord) -> str:
    """The canonical JSON of a record, ``hash`` included, as ``export_jsonl`` writes it.

    ``at`` is the timestamp text the hash covers, so the line can be re-hashed as is.
    """
    return canonical_value(record.model_dump(mode="json") | {"at": stamp(record.at)})


def export_lines(
    session: Session, out: TextIO, render: Callable[[AuditRecord], str], **filters: Any
) -> int:
    """Write ``render(record)`` and a newline for each matching record, oldest first."""
    after = 0
    written = 0
    while True:
        statement = (
            _filtered(select(AuditRow), **filters)
            .where(AuditRow.seq > after)
            .order_by(AuditRow.seq)
            .limit(_EXPORT_PAGE)
        )
        rows = [AuditRecord.model_validate(row) for row in session.scalars(statement)]
        out.writelines(render(record) + "\n" for record in rows)
        written += len(rows)
        if len(rows) < _EXPORT_PAGE:
            return written
        after = rows[-1].seq


def export_jsonl(session: Session, out: TextIO, **filters: Any) -> int:
    """Write matching records oldest first as canonical JSON Lines; return how many.

    Takes the filters of ``query`` (``actor``, ``action``, ``resource``, ``folder``,
    ``since``, ``until``). Each line carries ``hash`` and ``prev_hash`` so a SIEM can check
    the chain on its side.
    """
    return export_lines(session, out, json_line, **filters)
