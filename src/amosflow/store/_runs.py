"""The run index: one idempotent record per run, filtered lists with stable cursor paging."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from amosflow.errors import Diagnostic, NotFoundError, ValidationFailedError
from amosflow.store._paging import Page, check_limit, newest_first
from amosflow.store._tables import RUN_STATUSES, RUN_TRIGGERS, RunRow
from amosflow.store._timelines import get_timeline, record_timeline
from amosflow.store._types import utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

RunStatus = Literal["pending", "running", "completed", "failed", "cancelled", "timed_out"]
RunTrigger = Literal["manual", "schedule", "webhook", "deferred", "rerun", "cli"]
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "timed_out"})
# Statuses only move forward; a late or repeated report never moves a run back.
_RANK = {"pending": 0, "running": 1} | dict.fromkeys(TERMINAL_STATUSES, 2)


class RunRecord(BaseModel):
    """A run as the control plane lists it; Temporal's history holds the step detail."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    run_id: str = Field(min_length=1, max_length=200)
    flow_name: str = Field(min_length=1, max_length=200)
    flow_version: str = Field(default="", max_length=64, description="Git commit, or ''.")
    flow_hash: str = Field(max_length=128, description="Content hash of the pinned flow.")
    config_hash: str = Field(max_length=128, description="SHA-256 of the effective config.")
    status: RunStatus = "pending"
    trigger: RunTrigger = "manual"
    trigger_ref: str | None = Field(
        default=None, max_length=500, description="Trigger name, delivery id or source run."
    )
    folder: str = Field(default="default", max_length=200, description="The flow's folder.")
    started_by: str | None = Field(default=None, max_length=200, description="Audit actor.")
    inputs: dict[str, Any] = Field(default_factory=dict)
    output: Any = None
    error: dict[str, Any] | None = None
    created_at: AwareDatetime = Field(default_factory=utcnow)
    started_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None

    @field_validator("created_at", "started_at", "ended_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else value.astimezone(UTC)


def _insert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(RunRow)


def record_run(session: Session, record: RunRecord) -> RunRecord:
    """Insert ``record`` unless its run_id exists; return the stored row either way.

    The insert is ``ON CONFLICT DO NOTHING``, so concurrent or repeated starts of one run id
    (a webhook delivered five times, a restart) leave exactly one row.
    """
    values = record.model_dump()
    statement = _insert(session).values(**values).on_conflict_do_nothing(index_elements=["run_id"])
    inserted = session.execute(statement).rowcount  # type: ignore[attr-defined]
    # Inserted: the row holds exactly ``record``, no need to read it back (every run start).
    return record if inserted == 1 else get_run(session, record.run_id)


def _row(session: Session, run_id: str, *, lock: bool = False) -> RunRow:
    # populate_existing: a core-level insert or update may have changed a row already loaded.
    query = select(RunRow).where(RunRow.run_id == run_id).execution_options(populate_existing=True)
    row = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if row is None:
        raise NotFoundError(f"run {run_id!r} not found")
    return row


def root_run_id(run_id: str) -> str:
    """The recorded run a (child) run belongs to.

    A `call` step runs its flow as a child workflow named ``<run id>/<step>/<iteration>``;
    run ids never hold a ``/``, so the recorded run is what comes before the first one.
    """
    return run_id.split("/", 1)[0]


def get_run(session: Session, run_id: str) -> RunRecord:
    """Return the run ``run_id``; raise NotFoundError when there is none."""
    return RunRecord.model_validate(_row(session, run_id))


def _check(field: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValidationFailedError([Diagnostic(f"/{field}", f"must be one of {allowed}")])
    return value


def set_status(
    session: Session,
    run_id: str,
    status: str,
    *,
    output: Any = None,
    error: dict[str, Any] | None = None,
    ended_at: datetime | None = None,
) -> RunRecord:
    """Move a run forward to ``status``, stamping start and end times; return the new record.

    A terminal status is final: later reports (a watcher that resumed, a start that lost the
    race with a fast run) are ignored rather than rewriting what already happened.
    """
    _check("status", status, RUN_STATUSES)
    row = _row(session, run_id, lock=True)
    if row.status in TERMINAL_STATUSES or _RANK[status] <= _RANK[row.status]:
        return RunRecord.model_validate(row)
    now = utcnow()
    row.status = status
    if status != "pending" and row.started_at is None:
        row.started_at = now
    if status in TERMINAL_STATUSES:
        row.ended_at = ended_at or now
        if output is not None:
            row.output = output
        if error is not None:
            row.error = error
    session.flush()
    return RunRecord.model_validate(row)


def list_runs(
    session: Session,
    *,
    flow: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
    folders: frozenset[str] | None = None,
) -> Page[RunRecord]:
    """List runs newest first with optional filters; ``since`` is inclusive, ``until`` not.

    ``folders`` limits the runs to those folders (None: every folder).
    """
    check_limit(limit)
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailedError([Diagnostic(f"/{name}", "needs a time zone offset")])
    query = select(RunRow)
    if folders is not None:
        query = query.where(RunRow.folder.in_(sorted(folders)))
    if flow is not None:
        query = query.where(RunRow.flow_name == flow)
    if status is not None:
        query = query.where(RunRow.status == _check("status", status, RUN_STATUSES))
    if since is not None:
        query = query.where(RunRow.created_at >= since)
    if until is not None:
        query = query.where(RunRow.created_at < until)
    return newest_first(
        session,
        query,
        (RunRow.created_at, RunRow.run_id),
        cursor=cursor,
        limit=limit,
        record=RunRecord.model_validate,
    )


def count_runs(session: Session, *, flow: str | None = None, status: str | None = None) -> int:
    """Count runs matching the same filters as ``list_runs`` (for dashboards and tests)."""
    query = select(func.count()).select_from(RunRow)
    if flow is not None:
        query = query.where(RunRow.flow_name == flow)
    if status is not None:
        query = query.where(RunRow.status == _check("status", status, RUN_STATUSES))
    return int(session.scalar(query) or 0)


__all__ = [
    "RUN_TRIGGERS",
    "TERMINAL_STATUSES",
    "RunRecord",
    "RunStatus",
    "RunTrigger",
    "count_runs",
    "get_run",
    "get_timeline",
    "list_runs",
    "record_run",
    "record_timeline",
    "set_status",
]
