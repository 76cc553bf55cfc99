"""/api/v1/runners: enrollment (a one-time token for a certificate) and the fleet's state.

Enrollment is the one runner call on the API port: it has no certificate yet, so the
one-time token authenticates it. Everything else a runner does goes to the mTLS endpoint.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict, Field

from amosflow.api import _problems as problems
from amosflow.api._deps import ControlPlaneDep
from amosflow.api._security import CallerDep
from amosflow.config import RunnerSettings
from amosflow.identity import authorize
from amosflow.runner import dispatch

router = APIRouter(prefix="/api/v1/runners", tags=["runners"], responses=problems.RESPONSES)


class EnrollRequest(BaseModel):
    """A runner's first call: the one-time token, its CSR (PEM) and a name."""

    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=300)
    csr: str = Field(min_length=1, max_length=20_000)
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class EnrollResponse(BaseModel):
    """The runner's identity, certificate, the CA to pin, and where to connect."""

    runner_id: str
    certificate: str
    ca: str
    endpoint: str
    zone: str
    capabilities: list[str]
    not_after: datetime


class RunnerPublic(BaseModel):
    """A runner as the fleet view shows it."""

    model_config = ConfigDict(from_attributes=True)
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
    jobs: list[str] = Field(default_factory=list, description="Jobs it holds a live lease on.")


def _settings(request: Request) -> RunnerSettings:
    settings: RunnerSettings = request.app.state.runner_settings
    return settings


def _now() -> datetime:
    return datetime.now(UTC)


@router.post(
    "/enroll",
    status_code=status.HTTP_201_CREATED,
    response_model=EnrollResponse,
    responses={401: problems.documented("Token refused")},
)
def enroll(body: EnrollRequest, request: Request, cp: ControlPlaneDep) -> EnrollResponse:
    """Swap a one-time enrollment token and a CSR for a client certificate."""
    settings = _settings(request)
    done = dispatch.enroll_with_token(
        cp.store,
        settings,
        token=body.token,
        csr_pem=body.csr,
        name=body.name,
        address=request.client.host if request.client else "unknown",
        now=_now(),
    )
    return EnrollResponse(
        runner_id=done.runner_id,
        certificate=done.cert_pem.decode(),
        ca=done.ca_pem.decode(),
        endpoint=dispatch.endpoint_url(settings),
        zone=done.zone,
        capabilities=list(done.capabilities),
        not_after=done.not_after,
    )


@router.get("", response_model=list[RunnerPublic])
def list_runners(cp: ControlPlaneDep, caller: CallerDep) -> list[RunnerPublic]:
    """Every runner with its zone, capabilities, status, load and last heartbeat."""
    authorize(caller, "runners.read")
    return [RunnerPublic.model_validate(entry) for entry in dispatch.fleet(cp.store, now=_now())]


@router.post("/{runner_id}/drain", response_model=RunnerPublic)
def drain_runner(runner_id: str, cp: ControlPlaneDep, caller: CallerDep) -> RunnerPublic:
    """Stop giving the runner new jobs; the ones it holds finish."""
    authorize(caller, "runners.write")
    return RunnerPublic.model_validate(
        dispatch.drain_runner(cp.store, runner_id, actor=caller.actor, now=_now())
    )


@router.post("/{runner_id}/revoke", response_model=RunnerPublic)
def revoke_runner(runner_id: str, cp: ControlPlaneDep, caller: CallerDep) -> RunnerPublic:
    """Revoke the runner's certificate at once; its leases go back to the queue."""
    authorize(caller, "runners.write")
    return RunnerPublic.model_validate(
        dispatch.revoke_runner(cp.store, runner_id, actor=caller.actor, now=_now())
    )
