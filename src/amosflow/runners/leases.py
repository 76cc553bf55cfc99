"""Job leases with fencing tokens, and the registry of runners, on the control plane's store.

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

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from amosflow import audit
from amosflow.errors import (
    AuthenticationError,
    ConflictError,
    Diagnostic,
    NotFoundError,
    PermissionDeniedError,
    StaleLeaseError,
    ValidationFailedError,
)
from amosflow.store.tables import (
    DEFAULT_FOLDER,
    INSTALL_FOLDER,
    RUNNER_STATUSES,
    EnrollmentTokenRow,
    RunnerJobRow,
    RunnerRow,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.orm import Session

    from amosflow.store import Store

#: What a runner can be enrolled for; each action module names the one it needs.
CAPABILITIES = frozenset(
    {"core", "http", "browser", "file", "sql", "email", "sandbox", "document", "llm"}
)
#: A zone name: it goes into certificate URIs (``urn:amosflow:runner:<id>:<zone>``), so no ``:``.
ZONE = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
#: The answer to every refused runner credential; ``reason`` says why, for the audit only.
RUNNER_REFUSED = "runner credentials refused"
MAX_NAME_LENGTH = 200
FINISHED = frozenset({"completed", "failed"})

RunnerStatus = Literal["active", "draining", "revoked"]
JobState = Literal["queued", "leased", "completed", "failed"]
#: The ORM row of a job, under the name the dispatch code uses.
JobRow = RunnerJobRow


class RunnerRefused(AuthenticationError):  # noqa: N818 - a refusal, named like LoginRefused
    """A runner credential (enrollment token, certificate, identity) was refused.

    The message is the same for every cause so a caller learns nothing from it; ``reason``
    (``malformed``, ``unknown``, ``used``, ``expired``, ``not_yet_valid``, ``wrong_ca``,
    ``usage``, ``revoked``, ``mismatch``) is the truth, for the audit trail.
    """

    def __init__(self, reason: str, *, runner_id: str | None = None) -> None:
        self.reason = reason
        self.runner_id = runner_id
        super().__init__(RUNNER_REFUSED)


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


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("pass a timezone-aware datetime")
    return now.astimezone(UTC)


def _positive(ttl: timedelta, name: str) -> timedelta:
    if ttl <= timedelta(0):
        raise ValueError(f"{name} must be positive")
    return ttl


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def validate_zone(zone: str, pointer: str = "/zone") -> str:
    """Return ``zone`` when it is a zone name, else raise ValidationFailedError."""
    if not ZONE.fullmatch(zone):
        raise ValidationFailedError(
            [
                Diagnostic(
                    pointer,
                    f"{zone!r} is not a zone name: 1 to 100 lower-case letters, digits or "
                    ". _ -, starting with a letter or digit",
                )
            ]
        )
    return zone


def validate_capabilities(capabilities: Iterable[str], pointer: str = "/capabilities") -> list[str]:
    """Return the capabilities sorted and without repeats; unknown or none at all is invalid."""
    found = list(capabilities)
    problems = [
        Diagnostic(f"{pointer}/{index}", f"unknown capability {value!r}")
        for index, value in enumerate(found)
        if value not in CAPABILITIES
    ]
    if not found:
        problems.append(
            Diagnostic(pointer, f"name at least one of {', '.join(sorted(CAPABILITIES))}")
        )
    if problems:
        raise ValidationFailedError(problems)
    return sorted(set(found))


# --- the runner registry ------------------------------------------------------------------


def get_runner(session: Session, runner_id: str) -> RunnerRow:
    """The runner called ``runner_id``; NotFoundError when there is none."""
    row = session.get(RunnerRow, runner_id, populate_existing=True)
    if row is None:
        raise NotFoundError(f"runner {runner_id!r} not found")
    return row


def list_runners(
    session: Session, *, zone: str | None = None, status: RunnerStatus | None = None
) -> list[RunnerRow]:
    """Every runner (optionally of one zone or status), by name then id."""
    query = select(RunnerRow).order_by(RunnerRow.name, RunnerRow.id)
    if zone is not None:
        query = query.where(RunnerRow.zone == zone)
    if status is not None:
        query = query.where(RunnerRow.status == status)
    return list(session.scalars(query))


def register_runner(
    session: Session,
    *,
    runner_id: str,
    name: str,
    zone: str,
    capabilities: Iterable[str],
    cert_serial: str,
    cert_not_after: datetime,
    now: datetime,
    max_jobs: int = 1,
) -> RunnerRow:
    """Add an active runner known by the certificate with serial ``cert_serial``.

    ``enroll`` calls this after it issued the certificate; it is public so the dispatch
    tests and a future certificate-renewal path can register without a CSR round trip.
    ``capabilities`` are the grant only for a runner enrolled with a token (the token keeps
    it); one registered directly can later narrow what it offers but not grow it back.
    """
    at = _aware(now)
    problems: list[Diagnostic] = []
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        problems.append(Diagnostic("/name", f"1 to {MAX_NAME_LENGTH} characters"))
    if max_jobs < 1:
        problems.append(Diagnostic("/max_jobs", "at least 1"))
    if problems:
        raise ValidationFailedError(problems)
    granted = validate_capabilities(capabilities)
    validate_zone(zone)
    if session.get(RunnerRow, runner_id) is not None:
        raise ConflictError(f"runner {runner_id!r} exists already")
    row = RunnerRow(
        id=runner_id,
        name=name,
        zone=zone,
        capabilities=granted,
        cert_serial=cert_serial,
        cert_not_after=_aware(cert_not_after),
        status="active",
        last_heartbeat_at=None,
        load=0,
        max_jobs=max_jobs,
        created_at=at,
        revoked_at=None,
    )
    session.add(row)
    session.flush()
    return row


def _granted(session: Session, runner: RunnerRow) -> set[str]:
    """What the runner's enrollment token granted; what it has now when it had no token."""
    query = select(EnrollmentTokenRow.capabilities).where(
        EnrollmentTokenRow.used_by_runner == runner.id
    )
    token_capabilities = session.scalars(query).first()
    if token_capabilities is None:
        return set(runner.capabilities)
    return set(token_capabilities)


def heartbeat(
    session: Session,
    runner_id: str,
    *,
    load: int,
    capabilities: Iterable[str],
    zone: str,
    now: datetime,
    max_jobs: int | None = None,
) -> RunnerRow:
    """Record that the runner is alive, how busy it is and what it can do right now.

    A revoked runner is refused (RunnerRefused, reason ``revoked``): it must stop. The zone
    is fixed by enrollment and a heartbeat cannot move it (PermissionDeniedError), because
    the zone decides which data a runner gets to see. Capabilities may shrink and grow
    again within what the enrollment token granted, never beyond it: a runner whose browser
    broke stops getting browser jobs, a compromised one cannot claim ``sql``.
    """
    at = _aware(now)
    runner = get_runner(session, runner_id)
    if runner.status == "revoked":
        raise RunnerRefused("revoked", runner_id=runner_id)
    if runner.cert_not_after <= at:
        raise RunnerRefused("expired", runner_id=runner_id)
    if zone != runner.zone:
        raise PermissionDeniedError(
            f"runner {runner_id!r} is enrolled in zone {runner.zone!r}, not {zone!r}"
        )
    problems: list[Diagnostic] = []
    if load < 0:
        problems.append(Diagnostic("/load", "not negative"))
    if max_jobs is not None and max_jobs < 1:
        problems.append(Diagnostic("/max_jobs", "at least 1"))
    if problems:
        raise ValidationFailedError(problems)
    offered = validate_capabilities(capabilities)
    beyond = sorted(set(offered) - _granted(session, runner))
    if beyond:
        raise PermissionDeniedError(
            f"runner {runner_id!r} was not enrolled for {', '.join(beyond)}"
        )
    runner.capabilities = offered
    runner.load = load
    if max_jobs is not None:
        runner.max_jobs = max_jobs
    # Two API replicas with skewed clocks must not move the heartbeat backwards.
    if runner.last_heartbeat_at is None or at > runner.last_heartbeat_at:
        runner.last_heartbeat_at = at
    session.flush()
    return runner


def drain(session: Session, runner_id: str, *, actor: str, now: datetime) -> RunnerRow:
    """Stop giving the runner new jobs; its current leases run on until completed or expired.

    Draining is how a runner is taken out of service without failing its jobs. A drained
    runner keeps its certificate and can be put back with ``resume``; a revoked one cannot.
    """
    return _transition(
        session,
        runner_id,
        actor=actor,
        now=now,
        moves=("active", "draining"),
        action="runners.drain",
        revoked=f"runner {runner_id!r} is revoked",
    )


def resume(session: Session, runner_id: str, *, actor: str, now: datetime) -> RunnerRow:
    """Put a draining runner back into service; a revoked runner stays revoked."""
    return _transition(
        session,
        runner_id,
        actor=actor,
        now=now,
        moves=("draining", "active"),
        action="runners.resume",
        revoked=f"runner {runner_id!r} is revoked; enroll it again",
    )


def _transition(
    session: Session,
    runner_id: str,
    *,
    actor: str,
    now: datetime,
    moves: tuple[str, str],
    action: str,
    revoked: str,
) -> RunnerRow:
    """Move a runner from ``moves[0]`` to ``moves[1]`` (audited); other states stay as they are."""
    _aware(now)
    runner = get_runner(session, runner_id)
    if runner.status == "revoked":
        raise ConflictError(revoked)
    if runner.status == moves[0]:
        runner.status = moves[1]
        session.flush()
        audit.append(
            session,
            folder=INSTALL_FOLDER,
            actor=actor,
            action=action,
            resource=f"runner:{runner_id}",
            details={"zone": runner.zone, "name": runner.name},
        )
    return runner


def revoke(session: Session, runner_id: str, *, actor: str, now: datetime) -> RunnerRow:
    """Revoke the runner for good: its certificate is refused and its leases end now.

    Its leased jobs go back to the queue at once, so another runner takes them without
    waiting for the leases to run out; a late report from the revoked runner is stale,
    because it no longer holds the lease. Revoking twice changes nothing.
    """
    at = _aware(now)
    runner = get_runner(session, runner_id)
    if runner.status == "revoked":
        return runner
    runner.status = "revoked"
    runner.revoked_at = at
    query = (
        select(RunnerJobRow)
        .where(RunnerJobRow.runner_id == runner_id, RunnerJobRow.state == "leased")
        .order_by(RunnerJobRow.job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    freed = [_requeue(job, at) for job in session.scalars(query)]
    session.flush()
    audit.append(
        session,
        folder=INSTALL_FOLDER,
        actor=actor,
        action="runners.revoke",
        resource=f"runner:{runner_id}",
        details={"zone": runner.zone, "name": runner.name, "requeued": freed},
    )
    return runner


def eligible_runners(
    session: Session,
    *,
    capability: str,
    zone: str | None,
    now: datetime,
    heartbeat_ttl: timedelta,
) -> list[RunnerRow]:
    """The runners that could take a job now, least loaded first.

    Eligible: active (not draining, not revoked), a heartbeat within ``heartbeat_ttl``, a
    certificate still valid, ``capability`` among what it offers, and in ``zone`` (any zone
    when None). Load is the reported ``load / max_jobs``, compared exactly; ties go by name.
    An empty answer is the dispatcher's cue to fail fast with ``no_eligible_runner_message``
    instead of queueing a job nobody will take.
    """
    at = _aware(now)
    fresh_after = at - _positive(heartbeat_ttl, "heartbeat_ttl")
    query = select(RunnerRow).where(
        RunnerRow.status == "active",
        RunnerRow.last_heartbeat_at >= fresh_after,
        RunnerRow.cert_not_after > at,
    )
    if zone is not None:
        query = query.where(RunnerRow.zone == zone)
    # Capabilities are a JSON list; the fleet is small, so matching here stays portable.
    found = [row for row in session.scalars(query) if capability in row.capabilities]
    return sorted(found, key=lambda r: (Fraction(r.load, max(r.max_jobs, 1)), r.name, r.id))


def no_eligible_runner_message(capability: str, zone: str | None) -> str:
    """Say which capability and zone no runner could serve, for the step's error."""
    where = f"zone {zone!r}" if zone is not None else "any zone"
    return (
        f"no runner can take this step: none offers capability {capability!r} in {where} "
        "(it must be enrolled for it, active rather than draining or revoked, and sending "
        "heartbeats)"
    )


# --- jobs and their leases ----------------------------------------------------------------


def _insert(session: Session) -> Any:
    return (postgresql.insert if _is_postgres(session) else sqlite.insert)(RunnerJobRow)


def _job(session: Session, job_id: str, *, lock: bool) -> RunnerJobRow | None:
    # populate_existing: a core-level insert or another transaction may have changed it.
    query = (
        select(RunnerJobRow)
        .where(RunnerJobRow.job_id == job_id)
        .execution_options(populate_existing=True)
    )
    return session.scalars(query.with_for_update() if lock else query).one_or_none()


def get_job(session: Session, job_id: str) -> RunnerJobRow:
    """The job ``job_id``; NotFoundError when there is none."""
    row = _job(session, job_id, lock=False)
    if row is None:
        raise NotFoundError(f"runner job {job_id!r} not found")
    return row


def enqueue(session: Session, job: NewJob, *, now: datetime | None = None) -> RunnerJobRow:
    """Queue ``job`` unless a job with its id exists; return the stored row either way.

    The insert is ``ON CONFLICT DO NOTHING`` on the idempotency key, so a retried dispatch
    activity finds its job as it was: still queued, leased to a runner, or finished with
    its result (which is how "exactly once" survives an activity retry). One field is
    refreshed on an unfinished job: ``task_token``, because Temporal's async completion
    addresses one activity attempt, and the finished job must complete the newest one.
    ``now`` (default: the current time) is the job's place in the queue.
    """
    at = _aware(now) if now is not None else datetime.now(UTC)
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
    row = _job(session, job.job_id, lock=False)
    if row is None:  # pragma: no cover - the insert or the conflicting row put it there
        raise ConflictError(f"runner job {job.job_id!r} vanished while it was enqueued")
    if row.state not in FINISHED and job.task_token and row.task_token != job.task_token:
        row.task_token = job.task_token
        row.updated_at = max(at, row.updated_at)
        session.flush()
    return row


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
    at = _aware(now)
    _positive(ttl, "ttl")
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
    takeable = or_(
        RunnerJobRow.state == "queued",
        and_(RunnerJobRow.state == "leased", RunnerJobRow.lease_expires_at <= at),
    )
    query = (
        select(RunnerJobRow)
        .where(
            takeable,
            RunnerJobRow.capability.in_(offered),
            or_(RunnerJobRow.zone.is_(None), RunnerJobRow.zone == runner.zone),
        )
        .order_by(RunnerJobRow.created_at, RunnerJobRow.job_id)
        .limit(1)
        .execution_options(populate_existing=True)
    )
    if _is_postgres(session):
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
        _job(session, job_id, lock=False), job_id, runner_id=runner_id, fence=fence, at=_aware(now)
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
    at = _aware(now)
    _positive(ttl, "ttl")
    row = _holder_check(
        _job(session, job_id, lock=True), job_id, runner_id=runner_id, fence=fence, at=at
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
    at = _aware(now)
    if result is not None and error is not None:
        raise ValidationFailedError(
            [Diagnostic("/error", "a job ends with a result or an error, not both")]
        )
    found = _job(session, job_id, lock=True)
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


def _requeue(row: RunnerJobRow, at: datetime) -> str:
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
    at = _aware(now)
    query = (
        select(RunnerJobRow)
        .where(RunnerJobRow.state == "leased", RunnerJobRow.lease_expires_at <= at)
        .order_by(RunnerJobRow.job_id)
        .execution_options(populate_existing=True)
    )
    if _is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    expired = [_requeue(row, at) for row in session.scalars(query)]
    session.flush()
    return expired


__all__ = [
    "CAPABILITIES",
    "RUNNER_REFUSED",
    "RUNNER_STATUSES",
    "JobRow",
    "JobState",
    "Lease",
    "NewJob",
    "RunnerRefused",
    "RunnerRow",
    "RunnerStatus",
    "acquire",
    "complete",
    "complete_or_deny",
    "drain",
    "eligible_runners",
    "enqueue",
    "expire",
    "get_job",
    "get_runner",
    "heartbeat",
    "list_runners",
    "no_eligible_runner_message",
    "record_stale",
    "register_runner",
    "renew",
    "resume",
    "revoke",
    "validate_capabilities",
    "validate_zone",
]
