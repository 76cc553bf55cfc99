"""The runner endpoint: the only door a runner knocks on (HTTPS with mutual TLS).

A runner heartbeats, long-polls for a lease, renews it while it works, and reports the
outcome with the lease's fencing token. Every request is tied to a runner by its client
certificate, checked against the store on every call, so a revoked runner is refused at
once. A report with a stale fence is refused (409) and audited; a good one completes the
waiting Temporal activity.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from amosflow import audit
from amosflow.engine.types import ActionCall
from amosflow.errors import AuthenticationError, PermissionDeniedError, VaultSealedError
from amosflow.runner.dispatch import _leases as leases
from amosflow.runner.dispatch import _problems as problems
from amosflow.runner.dispatch import _registry as registry
from amosflow.runner.dispatch import _wake as wake
from amosflow.runner.dispatch._deliveries import Deliveries
from amosflow.runner.dispatch._enrollment import verify_client_cert
from amosflow.runner.dispatch._tls import PEER_CERT

if TYPE_CHECKING:
    from temporalio.client import Client

    from amosflow.config import RunnerSettings
    from amosflow.runner.dispatch._ca import PlatformCA
    from amosflow.store import RunnerRow, Store
    from amosflow.vault import Vault

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Fleet:
    """What the endpoint needs: the store, the CA, the Temporal client, the settings, the vault."""

    store: Store
    ca: PlatformCA
    client: Client
    settings: RunnerSettings
    vault: Vault | None = None
    fallback_poll_s: float = wake.FALLBACK_POLL_S
    #: SQLite lets one writer in at a time, and a writer that finds the lock taken backs off
    #: in sleeps of up to 100 ms. Every waiting long-poll is woken by each job, so their
    #: lease attempts queue here instead (PostgreSQL's SKIP LOCKED needs no such turn).
    acquiring: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    #: Completions Temporal has not taken yet, retried until it does (decision 0066).
    deliveries: Deliveries = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.deliveries = Deliveries(self.client, self.store)


class Beat(BaseModel):
    """A runner's heartbeat."""

    model_config = ConfigDict(extra="forbid")
    load: int = Field(default=0, ge=0, le=1000)
    capabilities: list[str] | None = None


class LeaseAsk(BaseModel):
    """A long-poll for work."""

    model_config = ConfigDict(extra="forbid")
    wait_seconds: float = Field(default=20.0, ge=0, le=60)


class Fenced(BaseModel):
    """A renewal: the job (its idempotency key, which holds `/`) and the lease's fence."""

    model_config = ConfigDict(extra="forbid")
    job_id: str = Field(min_length=1, max_length=200)
    fence: int = Field(ge=1)


class SecretAsk(Fenced):
    """The secrets a leased job needs, by name."""

    names: list[str] = Field(min_length=1, max_length=50)


class Report(Fenced):
    """A job's outcome: the output, or a failure (message, type, retryable).

    ``wait_seconds``, when given, makes the report also the long-poll for the runner's next
    job, so a busy runner spends one round trip per job instead of two.
    """

    output: Any = None
    failure: dict[str, Any] | None = None
    wait_seconds: float | None = Field(default=None, ge=0, le=60)


def _now() -> datetime:
    return datetime.now(UTC)


def _fleet(request: Request) -> Fleet:
    fleet: Fleet = request.app.state.fleet
    return fleet


FleetDep = Annotated[Fleet, Depends(_fleet)]


def _runner(request: Request, fleet: FleetDep) -> RunnerRow:
    der = request.scope.get("state", {}).get(PEER_CERT)
    if not der:
        raise AuthenticationError("a runner client certificate is required")
    with fleet.store.session() as session:
        return verify_client_cert(session, fleet.ca, der, now=_now())


RunnerDep = Annotated["RunnerRow", Depends(_runner)]


def create_endpoint(fleet: Fleet) -> FastAPI:
    """The runner endpoint's ASGI app (served by its own uvicorn with mTLS)."""
    app = FastAPI(title="AMOS FLOW runner endpoint", openapi_url=None, docs_url=None)
    app.state.fleet = fleet
    problems.install(app)

    @app.post("/runner/v1/heartbeat")
    def heartbeat(body: Beat, runner: RunnerDep) -> dict[str, str]:
        """Say the runner is alive and how busy; the answer says whether to drain."""
        with fleet.store.session() as session:
            row = registry.heartbeat(
                session,
                runner.id,
                load=body.load,
                capabilities=body.capabilities or runner.capabilities,
                zone=runner.zone,
                now=_now(),
            )
            return {"status": row.status}

    @app.post("/runner/v1/lease", responses={204: {"description": "No work"}})
    async def lease(body: LeaseAsk, runner: RunnerDep, request: Request) -> Any:
        """Wait up to ``wait_seconds`` for a job this runner may take.

        The wait is woken when a job is queued (``_wake``), and looks at the store anyway
        every ``fallback_poll_s`` in case a notification was lost or a lease ran out. A
        runner that hung up (stopped, killed) is not given a job it can no longer receive:
        each look first checks that its connection is still there.
        """
        granted = await _wait_for_lease(fleet, runner, request, body.wait_seconds)
        if granted is None:
            return Response(status_code=status.HTTP_204_NO_CONTENT)
        return _lease_body(fleet, granted)

    @app.post("/runner/v1/secrets")
    def secrets(body: SecretAsk, runner: RunnerDep) -> dict[str, dict[str, str]]:
        """Just in time: the values of exactly the secrets this leased job refers to.

        Only the lease's current holder gets them, only for names in the job's own call, and
        each delivery is audited (who, which job, which secret — never the value).
        """
        return {"values": _deliver(fleet, runner, body)}

    @app.post("/runner/v1/renew")
    def renew(body: Fenced, runner: RunnerDep) -> dict[str, str]:
        """Extend the lease; only its current holder with the current fence may."""
        with fleet.store.session() as session:
            until = leases.renew(
                session,
                body.job_id,
                runner_id=runner.id,
                fence=body.fence,
                now=_now(),
                ttl=fleet.settings.lease,
            )
        return {"expires_at": until.isoformat()}

    @app.post("/runner/v1/complete")
    async def complete(body: Report, runner: RunnerDep, request: Request) -> dict[str, Any]:
        """Record the outcome (fenced), complete the waiting activity, then maybe lease again.

        The outcome is stored and handed to Temporal before the next wait begins, so the
        wait never delays the run; a stale report is refused (409) before either.
        """
        row = await asyncio.to_thread(
            leases.complete_or_deny,
            fleet.store,
            body.job_id,
            runner_id=runner.id,
            fence=body.fence,
            now=_now(),
            result=body.output if body.failure is None else None,
            error=body.failure,
        )
        await fleet.deliveries.deliver(row)
        answer: dict[str, Any] = {"state": row.state, "lease": None}
        if body.wait_seconds is not None:
            granted = await _wait_for_lease(fleet, runner, request, body.wait_seconds)
            answer["lease"] = _lease_body(fleet, granted) if granted is not None else None
        return answer

    return app


def _deliver(fleet: Fleet, runner: RunnerRow, body: SecretAsk) -> dict[str, str]:
    """Check the holder and the names, audit each delivery, then decrypt."""
    if fleet.vault is None:
        raise VaultSealedError("this control plane has no vault")
    with fleet.store.session() as session:
        job = leases.held_job(
            session, body.job_id, runner_id=runner.id, fence=body.fence, now=_now()
        )
        allowed = ActionCall(**job.payload["call"]).secret_names()
        refused = sorted(set(body.names) - allowed)
        if refused:
            audit.append(
                session,
                actor=f"runner:{runner.id}",
                action="secrets.deliver",
                resource=f"runner-jobs/{job.job_id}",
                folder=job.folder,
                outcome="denied",
                details={"job_id": job.job_id, "names": refused},
            )
            denied = PermissionDeniedError(
                f"job {job.job_id!r} does not refer to {', '.join(refused)}"
            )
        else:
            denied = None
            for name in sorted(set(body.names)):
                audit.append(
                    session,
                    actor=f"runner:{runner.id}",
                    action="secrets.deliver",
                    resource=f"secrets/{name}",
                    folder=job.folder,
                    details={"job_id": job.job_id, "run_id": job.run_id, "fence": body.fence},
                )
    if denied is not None:
        raise denied
    # The job's folder is its run's, written by the dispatcher from the run's record.
    return {name: fleet.vault.reveal(name, job.folder) for name in set(body.names)}


async def _wait_for_lease(
    fleet: Fleet, runner: RunnerRow, request: Request, wait_seconds: float
) -> leases.Lease | None:
    """A lease for ``runner`` within ``wait_seconds``, or None (no job, or it hung up)."""
    signal = wake.job_signal(fleet.store)
    wake.listen(fleet.store)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    while True:
        if await request.is_disconnected():
            return None
        seen = signal.generation  # read before looking, so a job queued meanwhile wakes us
        if fleet.store.dialect == "sqlite":
            async with fleet.acquiring:
                granted = await asyncio.to_thread(_acquire, fleet, runner)
        else:
            granted = await asyncio.to_thread(_acquire, fleet, runner)
        remaining = deadline - loop.time()
        if granted is not None or remaining <= 0:
            return granted
        await signal.wait(seen, min(fleet.fallback_poll_s, remaining))


def _lease_body(fleet: Fleet, granted: leases.Lease) -> dict[str, Any]:
    """What a runner receives with a lease."""
    return {
        "job_id": granted.job_id,
        "fence": granted.fence,
        "expires_at": granted.expires_at.isoformat(),
        "attempt": granted.attempt,
        "payload": granted.payload,
        "lease_seconds": fleet.settings.lease_seconds,
    }


def _acquire(fleet: Fleet, runner: RunnerRow) -> leases.Lease | None:
    """Lease a job to ``runner``; a read first, so a look that finds nothing writes nothing."""
    with fleet.store.session(read_only=True) as session:
        if not leases.any_takeable(
            session, capabilities=runner.capabilities, zone=runner.zone, now=_now()
        ):
            return None
    with fleet.store.session() as session:
        return leases.acquire(
            session,
            runner.id,
            capabilities=runner.capabilities,
            zone=runner.zone,
            now=_now(),
            ttl=fleet.settings.lease,
        )
