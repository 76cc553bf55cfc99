"""/api/v1/audit: the trail for auditors — query, export, verify. Reading it changes nothing."""

from __future__ import annotations

import io
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from amosflow import audit
from amosflow.api import problems
from amosflow.api.deps import ControlPlaneDep
from amosflow.api.security import CallerDep
from amosflow.errors import Diagnostic, ValidationFailedError
from amosflow.identity import Principal, authorize, folder_scope

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


def _folder(caller: Principal, permission: str, folder: str | None) -> str | None:
    """The folder filter a caller's scope allows: any for a global auditor, else one of its own."""
    scope = folder_scope(caller, permission)
    if scope.every:
        return folder
    if folder is not None:
        authorize(caller, permission, folder=folder, missing=f"folder {folder!r} not found")
        return folder
    if len(scope.folders) == 1:
        return next(iter(scope.folders))
    if not scope.folders:
        authorize(caller, permission)  # raises: nowhere to look
    raise ValidationFailedError([Diagnostic("/folder", "name one of your folders")])


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
    scoped = _folder(caller, "audit.read", folder)
    with cp.store.session(read_only=True) as session:
        page = audit.query(
            session,
            actor=actor,
            action=action,
            resource=resource,
            folder=scoped,
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
    scoped = _folder(caller, "audit.export", folder)
    render = audit.json_line if export_format == "jsonl" else audit.to_cef
    out = io.StringIO()
    with cp.store.session(read_only=True) as session:
        audit.export_lines(session, out, render, folder=scoped, since=since, until=until)
    media = "application/jsonl" if export_format == "jsonl" else "text/plain"
    return PlainTextResponse(out.getvalue(), media_type=media)


@router.get("/verify", response_model=VerifyPublic)
def verify_chain(cp: ControlPlaneDep, caller: CallerDep) -> VerifyPublic:
    """Verify the whole chain and the checkpoints (what `amos audit verify` does)."""
    authorize(caller, "audit.read")
    settings = audit.AuditSettings(home=cp.settings.home)
    public_key = (
        audit.load_public_key(settings.public_key_path)
        if settings.public_key_path.exists()
        else None
    )
    report = audit.verify(cp.store, sink=audit.JsonlSink(settings.sink_path), public_key=public_key)
    return VerifyPublic.model_validate(report, from_attributes=True)
