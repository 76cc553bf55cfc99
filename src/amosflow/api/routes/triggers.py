"""/api/v1/triggers: schedules and webhooks, versioned in the catalog like flows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from amosflow.api import _catalog_objects as objects
from amosflow.api import _problems as problems
from amosflow.api._deps import ControlPlaneDep
from amosflow.api._schemas import FOLDER_PATTERN, VersionPublic
from amosflow.api._security import CallerDep
from amosflow.errors import Diagnostic, ValidationFailedError
from amosflow.identity import authorize
from amosflow.services import access, auditing
from amosflow.services import triggers as trigger_service
from amosflow.triggers import ScheduleTrigger, schedules

router = APIRouter(prefix="/api/v1/triggers", tags=["triggers"], responses=problems.RESPONSES)
KIND = trigger_service.KIND


class TriggerSave(BaseModel):
    """A trigger document to save, with the commit message."""

    model_config = ConfigDict(extra="forbid")
    document: dict[str, Any]
    message: str = Field(default="", max_length=2000)
    author: str | None = Field(default=None, max_length=200)
    folder: str | None = Field(
        default=None,
        pattern=FOLDER_PATTERN,
        description="Folder of the trigger; needed only when the name is ambiguous.",
    )


class TriggerPublic(BaseModel):
    """A trigger as stored, at its latest version."""

    name: str
    folder: str
    document: dict[str, Any]
    version: VersionPublic


class Backfill(BaseModel):
    """The interval to fire a schedule for, as if it had run then."""

    model_config = ConfigDict(extra="forbid")
    start_at: datetime
    end_at: datetime


def _public(name: str, folder: str, document: dict[str, Any], version: object) -> TriggerPublic:
    return TriggerPublic(
        name=name,
        folder=folder,
        document=document,
        version=VersionPublic.model_validate(version, from_attributes=True),
    )


@router.put("/{name}", response_model=TriggerPublic)
async def save_trigger(
    name: str, body: TriggerSave, cp: ControlPlaneDep, caller: CallerDep
) -> TriggerPublic:
    """Create or update a trigger; a schedule is synced to Temporal at once.

    A trigger starts runs of its folder's flow, so saving one needs the right to start them
    there too.
    """
    if body.document.get("name") != name:
        raise ValidationFailedError(
            [Diagnostic("/document/name", f"must be {name!r}, the name in the path")]
        )
    folder = access.write_guard(cp, caller, KIND, name, body.folder)
    authorize(caller, "runs.start", folder=folder, missing=f"folder {folder!r} not found")
    version = await trigger_service.save(
        cp,
        body.document,
        author=access.author_of(caller, body.author),
        message=body.message or f"save trigger {name}",
        actor=caller.actor,
        folder=folder,
    )
    return _public(name, folder, body.document, version)


@router.get("", response_model=list[TriggerPublic])
def list_triggers(
    cp: ControlPlaneDep, caller: CallerDep, folder: objects.FolderQuery = None
) -> list[TriggerPublic]:
    """Every trigger the caller may read (in ``folder`` only, when given)."""
    return [
        _public(e.name, e.folder, e.document, e.version)
        for e in objects.readable(cp, caller, KIND, folder)
    ]


@router.get("/{name}", response_model=TriggerPublic)
def get_trigger(
    name: str, cp: ControlPlaneDep, caller: CallerDep, folder: objects.FolderQuery = None
) -> TriggerPublic:
    """One trigger at its latest version."""
    entry = objects.read(cp, caller, "triggers.read", KIND, name, folder=folder)
    return _public(entry.name, entry.folder, entry.document, entry.version)


@router.delete("/{name}", response_model=VersionPublic)
async def delete_trigger(
    name: str, cp: ControlPlaneDep, caller: CallerDep, folder: objects.FolderQuery = None
) -> VersionPublic:
    """Delete a trigger (a commit) and its schedule."""
    found = access.guard(cp, caller, "triggers.write", KIND, name, folder=folder)
    version = await trigger_service.delete(
        cp,
        name,
        folder=found,
        author=access.author_of(caller, None),
        message=f"delete trigger {name}",
        actor=caller.actor,
    )
    return VersionPublic.model_validate(version, from_attributes=True)


def _schedule_only(
    cp: ControlPlaneDep, caller: CallerDep, name: str, folder: str | None
) -> tuple[ScheduleTrigger, str]:
    found = access.guard(cp, caller, "triggers.write", KIND, name, folder=folder)
    trigger = trigger_service.load(cp, name, found)
    if not isinstance(trigger, ScheduleTrigger):
        raise ValidationFailedError([Diagnostic("/type", f"trigger {name!r} is not a schedule")])
    return trigger, found


@router.post("/{name}/pause", status_code=status.HTTP_204_NO_CONTENT)
async def pause_trigger(
    name: str, cp: ControlPlaneDep, caller: CallerDep, folder: objects.FolderQuery = None
) -> None:
    """Pause a schedule; nothing fires until it is resumed."""
    _, found = _schedule_only(cp, caller, name, folder)
    _audit(cp, caller, name, found, "triggers.pause", {})  # the record comes first
    await schedules.pause(cp.client, name, found, paused=True)


@router.post("/{name}/resume", status_code=status.HTTP_204_NO_CONTENT)
async def resume_trigger(
    name: str, cp: ControlPlaneDep, caller: CallerDep, folder: objects.FolderQuery = None
) -> None:
    """Resume a paused schedule."""
    _, found = _schedule_only(cp, caller, name, folder)
    _audit(cp, caller, name, found, "triggers.resume", {})  # the record comes first
    await schedules.pause(cp.client, name, found, paused=False)


@router.post("/{name}/backfill", status_code=status.HTTP_202_ACCEPTED)
async def backfill_trigger(
    name: str,
    body: Backfill,
    cp: ControlPlaneDep,
    caller: CallerDep,
    folder: objects.FolderQuery = None,
) -> None:
    """Fire a schedule for every time it would have fired in the interval."""
    _, found = _schedule_only(cp, caller, name, folder)
    if body.end_at <= body.start_at:
        raise ValidationFailedError([Diagnostic("/end_at", "must be after start_at")])
    window = {"start_at": body.start_at.isoformat(), "end_at": body.end_at.isoformat()}
    _audit(cp, caller, name, found, "triggers.backfill", window)  # the record comes first
    await schedules.backfill(cp.client, name, found, body.start_at, body.end_at)


def _audit(  # noqa: PLR0917 - private, one argument per part of the record
    cp: ControlPlaneDep,
    caller: CallerDep,
    name: str,
    folder: str,
    action: str,
    details: dict[str, Any],
) -> None:
    auditing.record(
        cp.store,
        actor=caller.actor,
        action=action,
        resource=f"{KIND}/{name}",
        folder=folder,
        details=details,
    )
