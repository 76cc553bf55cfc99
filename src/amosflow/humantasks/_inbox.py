"""The task inbox's table: one row per human step a run waits on, listed across runs by cursor.

Rows move ``open`` → ``decided`` | ``expired`` | ``cancelled`` exactly once; ``close``
reports whether this call made the move, so whoever makes it writes the audit record and
the event, and a second writer (the API and the workflow's closing activity both try) is a
no-op.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from amosflow.errors import NotFoundError
from amosflow.store import Page, TaskRow, check_limit, newest_first
from amosflow.store import runs as run_store

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

TaskStatus = Literal["open", "decided", "expired", "cancelled"]
TaskKind = Literal["approval", "form", "review"]


def _now() -> datetime:
    return datetime.now(UTC)


class TaskRecord(BaseModel):
    """A human task as the inbox keeps it; the run in Temporal holds the truth."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: str
    run_id: str
    workflow_id: str
    step_id: str
    iteration: str = "0"
    flow: str
    folder: str = "default"
    kind: TaskKind
    title: str
    assignees: list[str] = Field(default_factory=list)
    form: dict[str, Any] | None = None
    status: TaskStatus = "open"
    claimed_by: str | None = None
    started_by: str | None = None
    escalated: bool = False
    decision: dict[str, Any] | None = None
    created_at: AwareDatetime = Field(default_factory=_now)
    due_at: AwareDatetime | None = None
    closed_at: AwareDatetime | None = None

    @field_validator("created_at", "due_at", "closed_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(UTC)


def insert(session: Session, record: TaskRecord) -> bool:
    """Insert ``record`` unless its id exists; True when this call created it."""
    dialect = session.get_bind().dialect.name
    statement = (
        (postgresql.insert if dialect == "postgresql" else sqlite.insert)(TaskRow)
        .values(**record.model_dump())
        .on_conflict_do_nothing()
    )
    return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def row(session: Session, task_id: str, *, lock: bool = False) -> TaskRow:
    """The row of ``task_id`` (locked for update when asked); NotFoundError when absent."""
    query = select(TaskRow).where(TaskRow.id == task_id).execution_options(populate_existing=True)
    found = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if found is None:
        raise NotFoundError(f"task {task_id!r} not found")
    return found


def get(session: Session, task_id: str) -> TaskRecord:
    """The task ``task_id``; NotFoundError when there is none."""
    return TaskRecord.model_validate(row(session, task_id))


def close(
    session: Session, task_id: str, status: str, decision: dict[str, Any] | None
) -> tuple[TaskRecord, bool]:
    """Move an open task to ``status``; the record, and whether this call moved it."""
    found = row(session, task_id, lock=True)
    if found.status != "open":
        return TaskRecord.model_validate(found), False
    found.status = status
    found.decision = decision
    found.closed_at = _now()
    session.flush()
    return TaskRecord.model_validate(found), True


def list_inbox(
    session: Session,
    *,
    status: str | None = None,
    folders: frozenset[str] | None = None,
    folder: str | None = None,
    overdue_at: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[TaskRecord]:
    """Every task newest first, whoever asks; ``overdue_at`` keeps open tasks due before it."""
    check_limit(limit)
    query = select(TaskRow)
    if folders is not None:
        query = query.where(TaskRow.folder.in_(sorted(folders)))
    if folder is not None:
        query = query.where(TaskRow.folder == folder)
    if status is not None:
        query = query.where(TaskRow.status == status)
    if overdue_at is not None:
        query = query.where(TaskRow.status == "open", TaskRow.due_at < overdue_at)
    return newest_first(
        session,
        query,
        (TaskRow.created_at, TaskRow.id),
        cursor=cursor,
        limit=limit,
        record=TaskRecord.model_validate,
    )


def root_run(session: Session, run_id: str) -> run_store.RunRecord | None:
    """The recorded run a task belongs to; a child run's id starts with its parent's."""
    for candidate in (run_id, run_id.split("/", 1)[0]):
        try:
            return run_store.get_run(session, candidate)
        except NotFoundError:
            continue
    return None
