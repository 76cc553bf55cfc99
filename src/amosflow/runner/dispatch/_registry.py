"""The registry of runners: who is enrolled, alive, offering what, and in which state.

A runner is active, draining (no new jobs; its leases run on) or revoked (refused for good,
its leases back in the queue). Every function takes the caller's Session and an explicit
``now``; a state change is audited in the caller's transaction.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING

from sqlalchemy import select

from amosflow import audit
from amosflow.errors import (
    ConflictError,
    Diagnostic,
    NotFoundError,
    PermissionDeniedError,
    ValidationFailedError,
)
from amosflow.runner.dispatch._grants import (
    MAX_NAME_LENGTH,
    RunnerRefused,
    RunnerStatus,
    aware,
    positive,
    validate_capabilities,
    validate_zone,
)
from amosflow.runner.dispatch._jobs import requeue
from amosflow.store import INSTALL_FOLDER, EnrollmentTokenRow, RunnerJobRow, RunnerRow

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime, timedelta

    from sqlalchemy.orm import Session


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
    at = aware(now)
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
        cert_not_after=aware(cert_not_after),
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
    at = aware(now)
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
    aware(now)
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
    at = aware(now)
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
    freed = [requeue(job, at) for job in session.scalars(query)]
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
    An empty answer with no ``enrolled_runners`` either is the dispatcher's cue to fail
    fast with ``no_eligible_runner_message`` instead of queueing a job nobody will take.
    """
    at = aware(now)
    fresh_after = at - positive(heartbeat_ttl, "heartbeat_ttl")
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


def enrolled_runners(
    session: Session, *, capability: str, zone: str | None, now: datetime
) -> list[RunnerRow]:
    """The runners enrolled to take such a job, whether or not they send heartbeats now.

    Active, a certificate still valid, ``capability`` among what it offers, in ``zone``
    (any when None). A runner here but not in ``eligible_runners`` is restarting or cut
    off: a step waits for it (up to the dispatch wait) instead of failing at once.
    """
    at = aware(now)
    query = select(RunnerRow).where(RunnerRow.status == "active", RunnerRow.cert_not_after > at)
    if zone is not None:
        query = query.where(RunnerRow.zone == zone)
    return sorted(
        (row for row in session.scalars(query) if capability in row.capabilities),
        key=lambda r: (r.name, r.id),
    )


def no_eligible_runner_message(capability: str, zone: str | None) -> str:
    """Say which capability and zone no runner could serve, for the step's error."""
    where = f"zone {zone!r}" if zone is not None else "any zone"
    return (
        f"no runner can take this step: none offers capability {capability!r} in {where} "
        "(it must be enrolled for it, active rather than draining or revoked, and sending "
        "heartbeats)"
    )
