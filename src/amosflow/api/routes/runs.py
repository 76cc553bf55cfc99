"""/api/v1/runs: start, list, inspect, cancel, re-run and stream runs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from sse_starlette import EventSourceResponse
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from amosflow.api import _problems as problems
from amosflow.api._deps import ControlPlaneDep
from amosflow.api._schemas import RunCreate, RunDetail, RunPage, RunPublic, RunStatus
from amosflow.api._security import CallerDep
from amosflow.engine.client import progress
from amosflow.services import RunRecord, follow
from amosflow.services import runs as run_service

#: A running run's live progress is best effort: a query a busy worker cannot answer soon
#: yields an empty timeline rather than holding the request.
LIVE_QUERY = timedelta(seconds=3)
router = APIRouter(prefix="/api/v1/runs", tags=["runs"], responses=problems.RESPONSES)


def _public(record: RunRecord) -> RunPublic:
    data = record.model_dump()
    data["flow"] = data.pop("flow_name")
    return RunPublic.model_validate(data)


WaitQuery = Annotated[
    str | None,
    Query(
        max_length=16,
        description="Wait up to this long for the run's end (`30s`, `1500ms`, `2m`; at most"
        " 120s): the ended run answers 201, a run still going 202, to be followed.",
    ),
]
_STILL_RUNNING: dict[int | str, dict[str, Any]] = {
    202: {"model": RunPublic, "description": "Started; it had not ended within `wait`."}
}


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=RunPublic, responses=_STILL_RUNNING
)
async def start_run(
    body: RunCreate,
    cp: ControlPlaneDep,
    caller: CallerDep,
    response: Response,
    wait: WaitQuery = None,
) -> RunPublic:
    """Start a run of a catalog flow; inputs and requirements are checked before it starts.

    With ``wait`` the answer holds until the run ends (its output or its error) or the wait
    is over (202: follow the Location).
    """
    waited = run_service.parse_wait(wait) if wait is not None else None
    request = run_service.StartRequest(
        flow=body.flow,
        version=body.version,
        inputs=body.inputs,
        environment=body.environment,
        trigger="deferred" if body.start_at else "manual",
        run_id=body.run_id,
        start_at=body.start_at,
        actor=caller.actor,
        principal=caller,
        folder=body.folder,
    )
    if waited is None:
        record = await run_service.start(cp, request)
    else:
        record = await run_service.start_and_wait(cp, request, waited)
        if record.status not in run_service.TERMINAL:
            response.status_code = status.HTTP_202_ACCEPTED
    response.headers["Location"] = f"/api/v1/runs/{record.run_id}"
    return _public(record)


@router.get("", response_model=RunPage)
def list_runs(
    cp: ControlPlaneDep,
    caller: CallerDep,
    *,
    flow: Annotated[str | None, Query(max_length=63)] = None,
    run_status: Annotated[RunStatus | None, Query(alias="status")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RunPage:
    """Runs the caller may see, newest first, filtered by flow, status and time, paged by cursor.

    A page can hold fewer than ``limit`` runs when ABAC conditions hide some of them; follow
    ``next_cursor`` until it is null.
    """
    page = run_service.list_runs(
        cp,
        caller,
        flow=flow,
        status=run_status,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    return RunPage(items=[_public(r) for r in page.items], next_cursor=page.next_cursor)


@router.get("/{run_id}", response_model=RunDetail)
async def get_run(run_id: str, cp: ControlPlaneDep, caller: CallerDep) -> RunDetail:
    """A run with its per-step timeline: an ended run's from the store, a running one's live.

    A run's end is recorded with its timeline, so reading an ended run asks Temporal nothing.
    """
    record = run_service.guard_run(cp, caller, "runs.read", run_id)
    steps = run_service.timeline(cp, run_id) if record.status in run_service.TERMINAL else None
    if steps is None:  # still running, or ended before timelines were recorded
        try:
            steps = await progress(cp.client.get_workflow_handle(run_id), rpc_timeout=LIVE_QUERY)
        except (RPCError, WorkflowQueryFailedError):
            steps = {}
    return RunDetail(**_public(record).model_dump(), steps=steps)


@router.post("/{run_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=RunPublic)
async def cancel_run(run_id: str, cp: ControlPlaneDep, caller: CallerDep) -> RunPublic:
    """Ask a run to cancel; it ends `cancelled` once its current step lets go."""
    return _public(await run_service.cancel(cp, run_id, caller))


@router.post("/{run_id}/rerun", status_code=status.HTTP_201_CREATED, response_model=RunPublic)
async def rerun(run_id: str, cp: ControlPlaneDep, caller: CallerDep) -> RunPublic:
    """Start a new run of the same flow version with the same inputs."""
    return _public(await run_service.rerun(cp, run_id, caller))


@router.get("/{run_id}/events", response_class=EventSourceResponse)
async def run_events(run_id: str, cp: ControlPlaneDep, caller: CallerDep) -> EventSourceResponse:
    """Server-Sent Events: each step event of the run as it happens, then the run's end."""
    run_service.guard_run(cp, caller, "runs.read", run_id)

    async def stream() -> AsyncIterator[dict[str, str]]:
        async for event in follow(cp.client.get_workflow_handle(run_id)):
            yield {"event": event.kind, "data": json.dumps(event.data, default=str)}

    return EventSourceResponse(stream())
