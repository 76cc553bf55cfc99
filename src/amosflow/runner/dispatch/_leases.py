"""Job leases with fencing tokens: who may run a job now, and whose report counts.

Why leases: a runner lives in another network zone and can pause, lose its network or die at
any moment, and the control plane cannot tell these apart. So a job is never handed to a
runner for good; it is *leased* for ``ttl``. The holder renews to keep it, and a lease
nobody renews runs out, so the job goes back to the queue and another runner takes it.

Why fences: a runner that lost its lease may not know it yet (a long pause, a partition, a
clock running fast or slow). Every acquisition adds one to the job's ``fence``, and a renewal
or completion must carry the fence it was given. A report from any earlier holder is then
refused with StaleLeaseError, whatever its clock says, so it can never overwrite the work of
the runner that holds the job now. The job's row is the only truth: at most one
``(runner_id, fence)`` pair is valid for a job at any moment.

Time is always a parameter (``now``, timezone-aware, from the control plane's clock), never
read here, so tests drive the clock and so the functions need no wall clock to be correct.

Every function takes the Session of one ``Store.session()``; the caller owns the
transaction. A refusal changes nothing, so the caller may still write the refusal to the
audit trail in the same transaction; ``complete_or_deny`` does exactly that for completions,
which is why a denied completion is on record even though the completion itself failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, or_, select

from amosflow import audit
from amosflow.errors import (
    ConflictError,
    Diagnostic,
    PermissionDeniedError,
    StaleLeaseError,
    ValidationFailedError,
)
from amosflow.runner.dispatch._grants import RunnerRefused, aware, positive
from amosflow.runner.dispatch._jobs import FINISHED, find_job, is_postgres
from amosflow.runner.dispatch._registry import get_runner
from amosflow.store import DEFAULT_FOLDER, RunnerJobRow

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime, timedelta

    from sqlalchemy.orm import Session

    from amosflow.store import Store


@dataclass(frozen=True, slots=True)
class Lease:
    """What a runner gets with a job: the job, its fence, and until when the lease holds.

    ``fence`` goes back with every renewal and the completion; ``attempt`` counts leases of
    this job so far, this one included.
    """

    job_id: str
    runner_id: str
    fence: int
    expires_at: datetime
    run_id: str
    step: str
    action: str
    capability: str
    folder: str
    attempt: int
    payload: dict[str, Any]


def _lease(row: RunnerJobRow) -> Lease:
    if row.runner_id is None or row.lease_expires_at is None:  # pragma: no cover - invariant
        raise ConflictError(f"runner job {row.job_id!r} is not leased")
    return Lease(
        job_id=row.job_id,
        runner_id=row.runner_id,
        fence=row.fence,
        expires_at=row.lease_expires_at,
        run_id=row.run_id,
        step=row.step,
        action=row.action,
        capability=row.capability,
        folder=row.folder,
        attempt=row.attempts,
        payload=dict(row.payload),
    )


def _held(session: Session, runner_id: str, at: datetime) -> int:
    query = select(func.count()).where(
        RunnerJobRow.runner_id == runner_id,
        RunnerJobRow.state == "leased",
        RunnerJobRow.lease_expires_at > at,
    )
    return int(session.scalar(query) or 0)


def _takeable(at: datetime, offered: Iterable[str], zone: str) -> Any:
    """The jobs a runner of ``zone`` offering ``offered`` may take at ``at``."""
    return and_(
        or_(
            RunnerJobRow.state == "queued",
            and_(RunnerJobRow.state == "leased", RunnerJobRow.lease_expires_at <= at),
        ),
        RunnerJobRow.capability.in_(list(offered)),
        or_(RunnerJobRow.zone.is_(None), RunnerJobRow.zone == zone),
    )


def any_takeable(
    session: Session, *, capabilities: Iterable[str], zone: str, now: datetime
) -> bool:
    """Whether some job is takeable by a runner of ``zone`` with ``capabilities`` at ``now``.

    A read, so a long-poll can skip ``acquire``'s write transaction when there is nothing
    for it (on SQLite, a writer holds the one write lock others must wait for).
    """
    query = select(RunnerJobRow.job_id).where(_takeable(aware(now), capabilities, zone)).limit(1)
    return session.scalars(query).first() is not None


def acquire(
    session: Session,
    runner_id: str,
    *,
    capabilities: Iterable[str],
    zone: str,
    now: datetime,
    ttl: timedelta,
) -> Lease | None:
    """Lease the oldest job this runner may take, or None when there is none for it.

    Takeable: queued, or leased with a lease that ran out by ``now`` (so no sweep has to
    run first), of a capability the runner both offers in ``capabilities`` and is
    registered for, in the runner's zone or in any zone. The lease bumps ``fence`` and
    ``attempts`` and lasts ``ttl``. A draining runner, or one already holding ``max_jobs``
    live leases, gets None; a revoked one is refused (RunnerRefused) and a ``zone`` other
    than its enrolled one is PermissionDeniedError.

    On PostgreSQL the row is taken ``FOR UPDATE SKIP LOCKED``, so runners polling at once
    each get a different job instead of queueing behind one row; on SQLite the store's
    ``BEGIN IMMEDIATE`` already makes every writer take turns. Two concurrent acquisitions
    by the same runner may both pass the ``max_jobs`` check; runners poll one at a time.
    """
    at = aware(now)
    positive(ttl, "ttl")
    runner = get_runner(session, runner_id)
    if runner.status == "revoked":
        raise RunnerRefused("revoked", runner_id=runner_id)
    if zone != runner.zone:
        raise PermissionDeniedError(
            f"runner {runner_id!r} is enrolled in zone {runner.zone!r}, not {zone!r}"
        )
    offered = sorted(set(capabilities) & set(runner.capabilities))
    if runner.status != "active" or not offered or _held(session, runner_id, at) >= runner.max_jobs:
        return None
    query = (
        select(RunnerJobRow)
        .where(_takeable(at, offered, runner.zone))
        .order_by(RunnerJobRow.created_at, RunnerJobRow.job_id)
        .limit(1)
        .execution_options(populate_existing=True)
    )
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    row = session.scalars(query).first()
    if row is None:
        return None
    row.state = "leased"
    row.runner_id = runner_id
    row.fence += 1
    row.lease_expires_at = at + ttl
    row.attempts += 1
    row.updated_at = at
    session.flush()
    return _lease(row)


def held_job(
    session: Session, job_id: str, *, runner_id: str, fence: int, now: datetime
) -> RunnerJobRow:
    """The job ``runner_id`` holds a live lease on at ``fence``; StaleLeaseError otherwise."""
    return _holder_check(
        find_job(session, job_id, lock=False),
        job_id,
        runner_id=runner_id,
        fence=fence,
        at=aware(now),
    )


def _holder_check(
    row: RunnerJobRow | None, job_id: str, *, runner_id: str, fence: int, at: datetime
) -> RunnerJobRow:
    """Return ``row`` when ``runner_id`` holds its lease at ``fence`` and it has not run out."""
    if row is None:
        raise StaleLeaseError(
            f"runner job {job_id!r} does not exist",
            job_id=job_id,
            runner_id=runner_id,
            fence=fence,
            current_fence=None,
        )
    expires = row.lease_expires_at
    if (
        row.state != "leased"
        or row.runner_id != runner_id
        or row.fence != fence
        or expires is None
        or expires <= at
    ):
        raise StaleLeaseError(
            f"runner {runner_id!r} does not hold job {job_id!r} at fence {fence} "
            f"(the job is {row.state} at fence {row.fence})",
            job_id=job_id,
            runner_id=runner_id,
            fence=fence,
            current_fence=row.fence,
        )
    return row


def renew(
    session: Session,
    job_id: str,
    *,
    runner_id: str,
    fence: int,
    now: datetime,
    ttl: timedelta,
) -> datetime:
    """Extend the lease to ``now + ttl`` and return the new end.

    Only the current holder, with the current fence, before its lease ran out: otherwise
    StaleLeaseError, and the runner must abandon the job (someone else may be running it).
    """
    at = aware(now)
    positive(ttl, "ttl")
    row = _holder_check(
        find_job(session, job_id, lock=True), job_id, runner_id=runner_id, fence=fence, at=at
    )
    row.lease_expires_at = at + ttl
    row.updated_at = at
    session.flush()
    return row.lease_expires_at


def complete(
    session: Session,
    job_id: str,
    *,
    runner_id: str,
    fence: int,
    now: datetime,
    result: Any = None,
    error: dict[str, Any] | None = None,
) -> RunnerJobRow:
    """Finish the job with ``result`` (state completed) or ``error`` (state failed).

    Only the current holder with the current fence and an unexpired lease; anything else
    raises StaleLeaseError and changes nothing (use ``complete_or_deny`` to have the denial
    audited). The same holder repeating its completion at the same fence (its first answer
    was lost on the way) gets the finished row back unchanged: the first report wins.
    Writes the ``runners.complete`` audit record in the caller's transaction.
    """
    at = aware(now)
    if result is not None and error is not None:
        raise ValidationFailedError(
            [Diagnostic("/error", "a job ends with a result or an error, not both")]
        )
    found = find_job(session, job_id, lock=True)
    if (
        found is not None
        and found.state in FINISHED
        and found.runner_id == runner_id
        and found.fence == fence
    ):
        return found
    row = _holder_check(found, job_id, runner_id=runner_id, fence=fence, at=at)
    row.state = "failed" if error is not None else "completed"
    row.result = result
    row.error = error
    row.lease_expires_at = None
    row.updated_at = at
    session.flush()
    audit.append(
        session,
        actor=f"runner:{runner_id}",
        action="runners.complete",
        resource=f"job:{job_id}",
        folder=row.folder,
        details={
            "job_id": job_id,
            "run_id": row.run_id,
            "step": row.step,
            "action": row.action,
            "runner_id": runner_id,
            "fence": fence,
            "state": row.state,
            "attempts": row.attempts,
        },
    )
    return row


def record_stale(session: Session, err: StaleLeaseError) -> None:
    """Write the ``runners.complete`` record with outcome ``denied`` for a refused completion.

    Call it in a transaction that commits: ``complete`` changed nothing when it refused, so
    the same session is fine as long as the exception does not escape it first.
    """
    found = session.get(RunnerJobRow, err.job_id)
    audit.append(
        session,
        actor=f"runner:{err.runner_id}",
        action="runners.complete",
        resource=f"job:{err.job_id}",
        folder=found.folder if found is not None else DEFAULT_FOLDER,
        outcome="denied",
        details={
            "job_id": err.job_id,
            "runner_id": err.runner_id,
            "fence": err.fence,
            "current_fence": err.current_fence,
        },
    )


def complete_or_deny(
    store: Store,
    job_id: str,
    *,
    runner_id: str,
    fence: int,
    now: datetime,
    result: Any = None,
    error: dict[str, Any] | None = None,
) -> RunnerJobRow:
    """``complete`` in a transaction of its own; a stale report is audited, then raised.

    This is the entry point for a runner's report: on StaleLeaseError the ``denied`` record
    is written and committed in that same transaction (the refusal changed nothing else),
    and only then is the error raised, so the denial is on record whatever the caller does.
    """
    with store.session() as session:
        try:
            return complete(
                session,
                job_id,
                runner_id=runner_id,
                fence=fence,
                now=now,
                result=result,
                error=error,
            )
        except StaleLeaseError as err:
            record_stale(session, err)
            denied = err
    raise denied
