"""Runner fixtures: the store tests' SQLite and PostgreSQL stores, a fixed clock, helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from amosflow.runner.dispatch import NewJob, heartbeat, register_runner
from amosflow.store import AuditRow, RunnerRow
from tests.store.conftest import pg_store, store, store_url  # noqa: F401

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)
HEARTBEAT_TTL = timedelta(seconds=60)


def at(seconds: float) -> datetime:
    """The test clock: ``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def add_runner(
    session: Session,
    runner_id: str,
    *,
    zone: str = "dc1",
    capabilities: tuple[str, ...] = ("core", "http"),
    load: int = 0,
    max_jobs: int = 4,
    now: datetime = T0,
    beat: bool = True,
) -> RunnerRow:
    """Register an active runner (certificate valid for a year) and send its first heartbeat."""
    row = register_runner(
        session,
        runner_id=runner_id,
        name=runner_id,
        zone=zone,
        capabilities=capabilities,
        cert_serial=f"serial-{runner_id}",
        cert_not_after=now + timedelta(days=365),
        now=now,
        max_jobs=max_jobs,
    )
    if beat:
        row = heartbeat(
            session, runner_id, load=load, capabilities=capabilities, zone=zone, now=now
        )
    return row


def new_job(
    job_id: str,
    *,
    capability: str = "core",
    zone: str | None = None,
    folder: str = "default",
    token: bytes = b"token-1",
) -> NewJob:
    return NewJob(
        job_id=job_id,
        run_id=f"run-{job_id}",
        step="s1",
        action=f"{capability}.do",
        capability=capability,
        zone=zone,
        folder=folder,
        payload={"url": "${secrets.erp_url}", "n": 1},
        task_token=token,
    )


def audit_rows(session: Session, action: str) -> list[AuditRow]:
    return list(
        session.scalars(select(AuditRow).where(AuditRow.action == action).order_by(AuditRow.seq))
    )
