"""/api/v1/triggers: schedules and webhooks, versioned in the catalog like flows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from amosflow.api import problems
from amosflow.api.deps import ControlPlaneDep
from amosflow.api.schemas import VersionPublic
from amosflow.errors import Diagnostic, ValidationFailedError
from amosflow.services import triggers as trigger_service
from amosflow.triggers import schedules
from amosflow.triggers.models import ScheduleTrigger

router = APIRouter(prefix="/api/v1/triggers", tags=["triggers"], responses=problems.RESPONSES)


class TriggerSave(BaseModel):
    """A trigger document to save, with the commit message."""

    model_config = ConfigDict(extra="forbid")
    document: dict[str, Any]
    message: str = Field(default="", max_length=2000)
    author: str = Field(default="api <api@amosflow.local>", max_length=200)


class TriggerPublic(BaseModel):
    """A trigger as stored, at its latest version."""

    name: str
    document: dict[str, Any]
    version: VersionPublic


class Backfill(BaseModel):
    """The interval to fire a schedule for, as if it had run then."""

    model_config = ConfigDict(extra="forbid")
    start_at: datetime
    end_at: datetime


def _public(name: str, document: dict[str, Any], version: object) -> TriggerPublic:
    return TriggerPublic(
        name=name,
        document=document,
        version=VersionPublic.model_validate(version, from_attributes=True),
    )


@router.put("/{name}", response_model=TriggerPublic)
async def save_trigger(name: str, body: TriggerSave, cp: ControlPlaneDep) -> TriggerPublic:
    """Create or update a trigger; a schedule is synced to Temporal at once."""
    if body.document.get("name") != name:
        raise ValidationFailedError(
            [Diagnostic("/document/name", f"must be {name!r}, the name in the path")]
        )
    version = await trigger_service.save(
        cp, body.document, author=body.author, message=body.message or f"save trigger {name}"
    )
    return _public(name, body.document, version)


@router.get("", response_model=list[TriggerPublic])
def list_triggers(cp: ControlPlaneDep) -> list[TriggerPublic]:
    """Every trigger at its latest version."""
    return [_public(e.name, e.document, e.version) for e in cp.catalog.list(trigger_service.KIND)]


@router.get("/{name}", response_model=TriggerPublic)
def get_trigger(name: str, cp: ControlPlaneDep) -> TriggerPublic:
    """One trigger at its latest version."""
    entry = cp.catalog.get(trigger_service.KIND, name)
    return _public(entry.name, entry.document, entry.version)


@router.delete("/{name}", response_model=VersionPublic)
async def delete_trigger(name: str, cp: ControlPlaneDep) -> VersionPublic:
    """Delete a trigger (a commit) and its schedule."""
    version = await trigger_service.delete(
        cp, name, author="api <api@amosflow.local>", message=f"delete trigger {name}"
    )
    return VersionPublic.model_validate(version, from_attributes=True)


def _schedule_only(cp: ControlPlaneDep, name: str) -> ScheduleTrigger:
    trigger = trigger_service.load(cp, name)
    if not isinstance(trigger, ScheduleTrigger):
        raise ValidationFailedError([Diagnostic("/type", f"trigger {name!r} is not a schedule")])
    return trigger


@router.post("/{name}/pause", status_code=status.HTTP_204_NO_CONTENT)
async def pause_trigger(name: str, cp: ControlPlaneDep) -> None:
    """Pause a schedule; nothing fires until it is resumed."""
    _schedule_only(cp, name)
    await schedules.pause(cp.client, name, paused=True)


@router.post("/{name}/resume", status_code=status.HTTP_204_NO_CONTENT)
async def resume_trigger(name: str, cp: ControlPlaneDep) -> None:
    """Resume a paused schedule."""
    _schedule_only(cp, name)
    await schedules.pause(cp.client, name, paused=False)


@router.post("/{name}/backfill", status_code=status.HTTP_202_ACCEPTED)
async def backfill_trigger(name: str, body: Backfill, cp: ControlPlaneDep) -> None:
    """Fire a schedule for every time it would have fired in the interval."""
    _schedule_only(cp, name)
    if body.end_at <= body.start_at:
        raise ValidationFailedError([Diagnostic("/end_at", "must be after start_at")])
    await schedules.backfill(cp.client, name, body.start_at, body.end_at)
