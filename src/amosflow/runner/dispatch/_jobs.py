"""The queue of runner jobs: enqueue a step's side effect once, find it, put it back.

A job's id is the step's idempotency key, so a retried dispatch finds its job as it was.
Leasing it to a runner is the business of the lease functions; this module owns the rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from amosflow.errors import ConflictError, NotFoundError
from amosflow.runner.dispatch._grants import CAPABILITIES, ZONE, aware
from amosflow.store import DEFAULT_FOLDER, RunnerJobRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

FINISHED = frozenset({"completed", "failed"})
JobState = Literal["queued", "leased", "completed", "failed"]
#: The ORM row of a job, under the name the dispatch code uses.
JobRow = RunnerJobRow


class NewJob(BaseModel):
    """A step's side effect to be run by a runner, as the dispatch activity enqueues it."""

    model_config = ConfigDict(frozen=True)

    job_id: str = Field(
        min_length=1, max_length=200, description="The step's idempotency key, same on retry."
    )
    run_id: str = Field(min_length=1, max_length=200)
    step: str = Field(min_length=1, max_length=200)
    action: str = Field(min_length=1, max_length=200, description="e.g. browser.open")
    capability: str = Field(description="The capability a runner needs to take it.")
    zone: str | None = Field(default=None, description="Only runners of this zone; None: any.")
    folder: str = Field(default=DEFAULT_FOLDER, min_length=1, max_length=200)
    payload: dict[str, Any] = Field(
        default_factory=dict, description="The action's input; secret references only."
    )
    task_token: bytes = Field(default=b"", description="Temporal's async-completion token.")

    @field_validator("capability")
    @classmethod
    def _known_capability(cls, value: str) -> str:
        if value not in CAPABILITIES:
            raise ValueError(
                f"unknown capability {value!r}; one of {', '.join(sorted(CAPABILITIES))}"
            )
        return value

    @field_validator("zone")
    @classmethod
    def _zone_name(cls, value: str | None) -> str | None:
        if value is not None and not ZONE.fullmatch(value):
            raise ValueError(f"{value!r} is not a zone name")
        return value


def is_postgres(session: Session) -> bool:
    """Whether the session talks to PostgreSQL (row locks, SKIP LOCKED) rather than SQLite."""
    return session.get_bind().dialect.name == "postgresql"


def _insert(session: Session) -> Any:
    return (postgresql.insert if is_postgres(session) else sqlite.insert)(RunnerJobRow)


def find_job(session: Session, job_id: str, *, lock: bool) -> RunnerJobRow | None:
    """The job ``job_id`` read afresh (locked FOR UPDATE when ``lock``), or None."""
    # populate_existing: a core-level insert or another transaction may have changed it.
    query = (
        select(RunnerJobRow)
        .where(RunnerJobRow.job_id == job_id)
        .execution_options(populate_existing=True)
    )
    return session.scalars(query.with_for_update() if lock else query).one_or_none()


def get_job(session: Session, job_id: str) -> RunnerJobRow:
    """The job ``job_id``; NotFoundError when there is none."""
    row = find_job(session, job_id, lock=False)
    if row is None:
        raise NotFoundError(f"runner job {job_id!r} not found")
    return row


def finished_since(session: Session, since: datetime) -> list[RunnerJobRow]:
    """The jobs that finished (completed or failed) at ``since`` or later."""
    query = select(RunnerJobRow).where(
        RunnerJobRow.state.in_(FINISHED), RunnerJobRow.updated_at >= since
    )
    return list(session.scalars(query))


def enqueue(session: Session, job: NewJob, *, now: datetime | None = None) -> RunnerJobRow:
    """Queue ``job`` unless a job with its id exists; return the stored row either way.

    The insert is ``ON CONFLICT DO NOTHING`` on the idempotency key, so a retried dispatch
    activity finds its job as it was: still queued, leased to a runner, or finished with
    its result (which is how "exactly once" survives an activity retry). One field is
    refreshed on an unfinished job: ``task_token``, because Temporal's async completion
    addresses one activity attempt, and the finished job must complete the newest one.
    ``now`` (default: the current time) is the job's place in the queue.
    """
    at = aware(now) if now is not None else datetime.now(UTC)
    values = job.model_dump() | {
        "state": "queued",
        "runner_id": None,
        "fence": 0,
        "lease_expires_at": None,
        "attempts": 0,
        "result": None,
        "error": None,
        "created_at": at,
        "updated_at": at,
    }
    statement = _insert(session).values(**values).on_conflict_do_nothing(index_elements=["job_id"])
    session.execute(statement)
    row = find_job(session, job.job_id, lock=False)
    if row is None:  # pragma: no cover - the insert or the conflicting row put it there
        raise ConflictError(f"runner job {job.job_id!r} vanished while it was enqueued")
    if row.state not in FINISHED and job.task_token and row.task_token != job.task_token:
        row.task_token = job.task_token
        row.updated_at = max(at, row.updated_at)
        session.flush()
    return row


def requeue(row: RunnerJobRow, at: datetime) -> str:
    """Put a leased job back in the queue; its fence stays until the next lease bumps it."""
    row.state = "queued"
    row.runner_id = None
    row.lease_expires_at = None
    row.updated_at = at
    return row.job_id


def expire(session: Session, *, now: datetime) -> list[str]:
    """Put every job whose lease ran out by ``now`` back in the queue; return their ids.

    ``acquire`` takes expired jobs by itself, so this sweep is for what the fleet shows
    (a job shown as leased to a dead runner is confusing), not for progress. On PostgreSQL
    a row someone is renewing or completing right now is skipped until the next sweep.
    """
    at = aware(now)
    query = (
        select(RunnerJobRow)
        .where(RunnerJobRow.state == "leased", RunnerJobRow.lease_expires_at <= at)
        .order_by(RunnerJobRow.job_id)
        .execution_options(populate_existing=True)
    )
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    expired = [requeue(row, at) for row in session.scalars(query)]
    session.flush()
    return expired
