"""/api/v1/audit: the trail for auditors — query, export, verify. Reading it changes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from amosflow import audit
from amosflow.api import _problems as problems
from amosflow.api._deps import ControlPlaneDep
from amosflow.api._security import CallerDep
from amosflow.identity import authorize
from amosflow.services import audit_trail

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], responses=problems.RESPONSES)
Text = Annotated[str | None, Query(max_length=500)]


class AuditPage(BaseModel):
    """One page of audit records, newest first."""

    items: list[audit.AuditRecord]
    next_cursor: str | None = None


class VerifyPublic(BaseModel):
    """The outcome of verifying the whole chain against the signed checkpoints."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    last_checkpoint_seq: int | None = None


@router.get("", response_model=AuditPage)
def list_records(
    cp: ControlPlaneDep,
    caller: CallerDep,
    *,
    actor: Text = None,
    action: Text = None,
    resource: Text = None,
    folder: Text = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    """Audit records the caller may see, newest first, filtered and paged by cursor."""
    page = audit_trail.query(
        cp.store,
        caller,
        actor=actor,
        action=action,
        resource=resource,
        folder=folder,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    return AuditPage(items=list(page.items), next_cursor=page.next_cursor)


@router.get(
    "/export",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "One record per line, oldest first.",
            "content": {
                "application/jsonl": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}},
            },
        }
    },
)
def export_records(
    cp: ControlPlaneDep,
    caller: CallerDep,
    *,
    export_format: Annotated[Literal["jsonl", "cef"], Query(alias="format")] = "jsonl",
    folder: Text = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> PlainTextResponse:
    """Every matching record oldest first, as JSON Lines (re-hashable) or CEF lines."""
    lines = audit_trail.export(
        cp.store, caller, export_format, folder=folder, since=since, until=until
    )
    media = "application/jsonl" if export_format == "jsonl" else "text/plain"
    return PlainTextResponse(lines, media_type=media)


@router.get("/verify", response_model=VerifyPublic)
def verify_chain(cp: ControlPlaneDep, caller: CallerDep) -> VerifyPublic:
    """Verify the whole chain and the checkpoints (what `amos audit verify` does)."""
    authorize(caller, "audit.read")
    report = audit_trail.verify(cp.store, cp.settings.home)
    return VerifyPublic.model_validate(report, from_attributes=True)
