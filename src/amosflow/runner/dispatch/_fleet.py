"""The fleet's use cases for the API and the CLI: enroll, list, drain, revoke, issue tokens.

Each opens its own transaction on the store it is given, so a caller parses, authorizes,
calls one of these and shapes the answer. A fleet entry is a snapshot, not an ORM row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from amosflow import audit
from amosflow.errors import AuthenticationError
from amosflow.runner.dispatch._ca import PlatformCA
from amosflow.runner.dispatch._enrollment import Enrollment, create_enrollment_token, enroll
from amosflow.runner.dispatch._registry import drain, list_runners, revoke
from amosflow.store import INSTALL_FOLDER, RunnerJobRow, RunnerRow

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime, timedelta

    from amosflow.config import RunnerSettings
    from amosflow.store import Store


@dataclass(frozen=True, slots=True)
class FleetEntry:
    """A runner as the fleet shows it, with the jobs it holds a live lease on."""

    id: str
    name: str
    zone: str
    capabilities: list[str]
    status: str
    load: int
    max_jobs: int
    last_heartbeat_at: datetime | None
    cert_not_after: datetime
    created_at: datetime
    revoked_at: datetime | None
    jobs: list[str]

    @classmethod
    def of(cls, row: RunnerRow, jobs: Iterable[str] = ()) -> FleetEntry:
        """The snapshot of one runner's row."""
        return cls(
            id=row.id,
            name=row.name,
            zone=row.zone,
            capabilities=list(row.capabilities),
            status=row.status,
            load=row.load,
            max_jobs=row.max_jobs,
            last_heartbeat_at=row.last_heartbeat_at,
            cert_not_after=row.cert_not_after,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
            jobs=list(jobs),
        )


def enroll_with_token(
    store: Store,
    settings: RunnerSettings,
    *,
    token: str,
    csr_pem: str,
    name: str,
    address: str,
    now: datetime,
) -> Enrollment:
    """Swap a one-time token and a CSR for a certificate; a refusal is audited, then raised.

    The refusal's record names the reason and the caller's address, never the token.
    """
    ca = PlatformCA.load_or_create(settings.directory / "ca")
    try:
        with store.session() as session:
            return enroll(session, ca, token=token, csr_pem=csr_pem, name=name, now=now)
    except AuthenticationError as err:
        with store.session() as session:
            audit.append(
                session,
                folder=INSTALL_FOLDER,
                actor="anonymous",
                action="runners.enroll",
                resource="runners",
                outcome="denied",
                details={"reason": str(getattr(err, "reason", "invalid")), "address": address},
            )
        raise


def issue_enrollment_token(
    store: Store,
    *,
    zone: str,
    capabilities: Iterable[str],
    created_by: str,
    ttl: timedelta,
    now: datetime,
) -> str:
    """Create a one-time enrollment token in a transaction of its own (see the token rules)."""
    with store.session() as session:
        return create_enrollment_token(
            session,
            zone=zone,
            capabilities=capabilities,
            created_by=created_by,
            ttl=ttl,
            now=now,
        )


def fleet(store: Store, *, now: datetime, zone: str | None = None) -> list[FleetEntry]:
    """Every runner (optionally of one zone) by name, with the jobs it holds at ``now``."""
    with store.session(read_only=True) as session:
        held: dict[str, list[str]] = {}
        for job in session.scalars(select(RunnerJobRow).where(RunnerJobRow.state == "leased")):
            if job.runner_id and job.lease_expires_at and job.lease_expires_at > now:
                held.setdefault(job.runner_id, []).append(job.job_id)
        return [
            FleetEntry.of(row, held.get(row.id, [])) for row in list_runners(session, zone=zone)
        ]


def drain_runner(store: Store, runner_id: str, *, actor: str, now: datetime) -> FleetEntry:
    """Stop giving the runner new jobs (audited); the ones it holds finish."""
    with store.session() as session:
        return FleetEntry.of(drain(session, runner_id, actor=actor, now=now))


def revoke_runner(store: Store, runner_id: str, *, actor: str, now: datetime) -> FleetEntry:
    """Revoke the runner at once (audited); its leased jobs go back to the queue."""
    with store.session() as session:
        return FleetEntry.of(revoke(session, runner_id, actor=actor, now=now))
