"""/api/v1/tasks: the human-task inbox across runs; list, claim, unclaim and decide."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, Field

from amosflow import humantasks
from amosflow.api import _problems as problems
from amosflow.api._deps import ControlPlaneDep
from amosflow.api._security import CallerDep
from amosflow.config import TaskSettings
from amosflow.humantasks import TaskRecord, console_link
from amosflow.identity import authorize

if TYPE_CHECKING:
    from amosflow.identity import Principal
    from amosflow.services import ControlPlane

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"], responses=problems.RESPONSES)

Channel = Annotated[
    Literal["api", "console"],
    Header(alias="X-Amos-Channel", description="Where the caller acts from, for the audit."),
]


def _task_settings(request: Request) -> TaskSettings:
    settings: TaskSettings = request.app.state.task_settings
    return settings


TaskSettingsDep = Annotated[TaskSettings, Depends(_task_settings)]


class TaskDecisionPublic(BaseModel):
    """The decision on a task, as the run's step output holds it."""

    outcome: str
    comment: str = ""
    by: str
    at: str
    data: dict[str, Any] | None = None


class TaskPublic(BaseModel):
    """A human task in the inbox."""

    id: str
    run_id: str
    step_id: str
    flow: str
    folder: str
    kind: Literal["approval", "form", "review"]
    title: str
    assignees: list[str]
    form: dict[str, Any] | None = Field(description="JSON Schema of the form, for form tasks.")
    status: Literal["open", "decided", "expired", "cancelled"]
    claimed_by: str | None
    created_at: datetime
    due_at: datetime | None
    escalated: bool
    started_by: str | None
    decision: TaskDecisionPublic | None
    console_url: str = Field(description="The console's deep link to this task.")


class TaskPage(BaseModel):
    """One page of tasks; follow ``next_cursor`` until it is null."""

    items: list[TaskPublic]
    next_cursor: str | None = None


class TaskDecide(BaseModel):
    """A decision: `approved`/`rejected` (approval, review) or `submitted` (form)."""

    outcome: Literal["approved", "rejected", "submitted"]
    comment: str = Field(default="", max_length=4000)
    data: dict[str, Any] | None = Field(
        default=None, description="The submitted form, checked against the task's schema."
    )


def _public(record: TaskRecord) -> TaskPublic:
    data = record.model_dump(exclude={"iteration", "workflow_id", "closed_at"})
    return TaskPublic(**data, console_url=console_link("", record.id))


def _authorize(cp: ControlPlane, caller: Principal, permission: str, task_id: str) -> TaskRecord:
    """The task, once ``caller`` may do ``permission`` on it; one it can't see is not found."""
    record = humantasks.get_task(cp.store, task_id)
    authorize(
        caller,
        permission,
        folder=record.folder,
        resource=humantasks.task_resource(record),
        missing=f"task {task_id!r} not found",
    )
    return record


@router.get("", response_model=TaskPage)
def list_tasks(  # noqa: PLR0917 - one parameter per documented filter
    cp: ControlPlaneDep,
    caller: CallerDep,
    scope: Literal["mine", "all"] = "mine",
    task_status: Annotated[Literal["open", "decided", "all"], Query(alias="status")] = "open",
    folder: Annotated[str | None, Query(max_length=200)] = None,
    overdue: bool = False,  # noqa: FBT001, FBT002 - a query flag
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TaskPage:
    """Tasks the caller may see, newest first: its own (`mine`) or every one (`all`)."""
    query = humantasks.TaskQuery(
        mine=scope == "mine",
        status=None if task_status == "all" else task_status,
        folder=folder,
        overdue=overdue,
        cursor=cursor,
        limit=limit,
    )
    page = humantasks.list_tasks(cp.store, caller, query)
    return TaskPage(items=[_public(r) for r in page.items], next_cursor=page.next_cursor)


@router.get("/{task_id}", response_model=TaskPublic)
def get_task(task_id: str, cp: ControlPlaneDep, caller: CallerDep) -> TaskPublic:
    """One task."""
    return _public(_authorize(cp, caller, "approvals.read", task_id))


@router.post("/{task_id}/claim", response_model=TaskPublic)
def claim_task(
    task_id: str, cp: ControlPlaneDep, caller: CallerDep, channel: Channel = "api"
) -> TaskPublic:
    """Claim an open task, so the other assignees see it is taken (409 if someone holds it)."""
    _authorize(cp, caller, "approvals.decide", task_id)
    return _public(humantasks.claim(cp.store, caller, task_id, channel))


@router.post("/{task_id}/unclaim", response_model=TaskPublic)
def unclaim_task(
    task_id: str, cp: ControlPlaneDep, caller: CallerDep, channel: Channel = "api"
) -> TaskPublic:
    """Give a claimed task back to its assignees."""
    _authorize(cp, caller, "approvals.decide", task_id)
    return _public(humantasks.unclaim(cp.store, caller, task_id, channel))


@router.post("/{task_id}/decide", response_model=TaskPublic)
async def decide_task(  # noqa: PLR0917 - FastAPI injects each dependency
    task_id: str,
    body: TaskDecide,
    cp: ControlPlaneDep,
    caller: CallerDep,
    settings: TaskSettingsDep,
    channel: Channel = "api",
) -> TaskPublic:
    """Decide a task; 409 when it is decided or its run ended, 403 for four-eyes."""
    _authorize(cp, caller, "approvals.decide", task_id)
    decision = humantasks.Decision(
        outcome=body.outcome, comment=body.comment, data=body.data, channel=channel
    )
    done = await humantasks.decide(cp, caller, task_id, decision, four_eyes=settings.four_eyes)
    return _public(done)
