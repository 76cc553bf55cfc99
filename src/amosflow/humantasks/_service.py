"""Human tasks as people see them: list the inbox, claim, unclaim and decide.

A decision goes to the run first, as the workflow's ``decide`` update: the run is the
judge of who wins, so two people deciding at once cannot both succeed. The inbox row is then
closed from the update's result; the workflow's own closing activity closes it too, so a
crash between the two heals (decision 0033). The caller is authorized before any of these
is called (the route does it with ``task_resource``); the list filters by what it may read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from jsonschema import Draft202012Validator
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from amosflow import audit
from amosflow.engine.types import DECIDE_UPDATE, TaskClose, TaskDecision
from amosflow.errors import (
    ConflictError,
    Diagnostic,
    EngineError,
    FourEyesError,
    PermissionDeniedError,
    TaskClosedError,
    ValidationFailedError,
)
from amosflow.humantasks import _inbox as inbox
from amosflow.humantasks._lifecycle import close_task
from amosflow.identity import ALL_FOLDERS, allows, folder_scope
from amosflow.store import Page

if TYPE_CHECKING:
    from temporalio.client import Client

    from amosflow.identity import Principal
    from amosflow.store import Store


class TaskPlane(Protocol):
    """What deciding a task needs of the control plane: its store and its Temporal client."""

    @property
    def store(self) -> Store:
        """The store the inbox lives in."""
        ...

    @property
    def client(self) -> Client:
        """The client the ``decide`` update goes through."""
        ...


OUTCOMES: dict[str, tuple[str, ...]] = {
    "approval": ("approved", "rejected"),
    "review": ("approved", "rejected"),
    "form": ("submitted",),
}
_TERMINAL = frozenset({"completed", "failed", "cancelled", "timed_out"})
# The workflow's refusals (engine/workflow/human.py), as the API's errors.
_REFUSALS: dict[str, type[Exception]] = {
    "TaskNotOpen": TaskClosedError,
    "TaskAlreadyDecided": TaskClosedError,
    "FourEyes": FourEyesError,
}


def task_resource(record: inbox.TaskRecord) -> dict[str, Any]:
    """What ABAC conditions see of a task as ``resource``."""
    return {
        "kind": "task",
        "id": record.id,
        "run_id": record.run_id,
        "flow": record.flow,
        "folder": record.folder,
        "started_by": record.started_by,
    }


def get_task(store: Store, task_id: str) -> inbox.TaskRecord:
    """The task ``task_id``, for a caller yet to be authorized on it; NotFoundError if none."""
    with store.session(read_only=True) as session:
        return inbox.get(session, task_id)


def _assignee_parts(assignee: str) -> tuple[str, str]:
    kind, sep, name = assignee.partition(":")
    return (kind, name) if sep and kind in {"user", "role", "group"} else ("user", assignee)


def is_assignee(principal: Principal, record: inbox.TaskRecord) -> bool:
    """Whether the task is the principal's: named, by role (in its folder), group or claim.

    A task with no assignees is everyone's who may decide tasks in its folder.
    """
    if record.claimed_by == principal.actor or not record.assignees:
        return True
    roles = {b.role for b in principal.bindings if b.folder in {ALL_FOLDERS, record.folder}}
    for assignee in record.assignees:
        kind, name = _assignee_parts(assignee)
        if (
            (kind == "user" and name == principal.username)
            or (kind == "role" and name in roles)
            or (kind == "group" and name in principal.groups)
        ):
            return True
    return False


@dataclass(frozen=True)
class TaskQuery:
    """The inbox filters of ``GET /api/v1/tasks``."""

    mine: bool = True
    status: str | None = "open"
    folder: str | None = None
    overdue: bool = False
    cursor: str | None = None
    limit: int = 50


def list_tasks(store: Store, principal: Principal, query: TaskQuery) -> Page[inbox.TaskRecord]:
    """The tasks the caller may see, newest first; ``mine`` keeps the caller's own.

    A page can hold fewer than ``limit`` tasks when filters in Python hide some (ABAC
    conditions, ``mine``); follow ``next_cursor`` until it is null.
    """
    scope = folder_scope(principal, "approvals.read")
    with store.session(read_only=True) as session:
        page = inbox.list_inbox(
            session,
            status=query.status,
            folders=None if scope.every else scope.folders,
            folder=query.folder,
            overdue_at=datetime.now(UTC) if query.overdue else None,
            cursor=query.cursor,
            limit=query.limit,
        )
    shown = [
        r
        for r in page.items
        if allows(principal, "approvals.read", r.folder, task_resource(r))
        and (not query.mine or is_assignee(principal, r))
    ]
    return Page(shown, page.next_cursor)


def claim(
    store: Store, principal: Principal, task_id: str, channel: str = "api"
) -> inbox.TaskRecord:
    """Take an open task so others see it is being handled; 409 if someone else holds it."""
    record = get_task(store, task_id)
    if not is_assignee(principal, record):
        raise PermissionDeniedError(f"{principal.actor} is not an assignee of task {task_id}")
    with store.session() as session:
        row = inbox.row(session, task_id, lock=True)
        if row.status != "open":
            raise TaskClosedError(f"task {task_id} is already {row.status}")
        if row.claimed_by not in {None, principal.actor}:
            raise ConflictError(f"task {task_id} is claimed by {row.claimed_by}")
        row.claimed_by = principal.actor
        session.flush()
        audit.append(
            session,
            actor=principal.actor,
            action="tasks.claim",
            resource=f"tasks/{task_id}",
            folder=row.folder,
            details={"run_id": row.run_id, "channel": channel},
        )
        return inbox.TaskRecord.model_validate(row)


def unclaim(
    store: Store, principal: Principal, task_id: str, channel: str = "api"
) -> inbox.TaskRecord:
    """Give a claimed task back to its assignees; only its claimer may."""
    with store.session() as session:
        row = inbox.row(session, task_id, lock=True)
        if row.status != "open":
            raise TaskClosedError(f"task {task_id} is already {row.status}")
        if row.claimed_by not in {None, principal.actor}:
            raise ConflictError(f"task {task_id} is claimed by {row.claimed_by}")
        row.claimed_by = None
        session.flush()
        audit.append(
            session,
            actor=principal.actor,
            action="tasks.unclaim",
            resource=f"tasks/{task_id}",
            folder=row.folder,
            details={"run_id": row.run_id, "channel": channel},
        )
        return inbox.TaskRecord.model_validate(row)


@dataclass(frozen=True)
class Decision:
    """What a person decides: the outcome, a comment and, for a form, the submitted data."""

    outcome: str
    comment: str = ""
    data: dict[str, Any] | None = None
    channel: str = "api"


def _check_decision(record: inbox.TaskRecord, decision: Decision) -> None:
    allowed = OUTCOMES[record.kind]
    if decision.outcome not in allowed:
        raise ValidationFailedError(
            [Diagnostic("/outcome", f"a {record.kind} task takes one of: {', '.join(allowed)}")]
        )
    if record.kind == "form" and record.form is not None:
        validator = Draft202012Validator(record.form)
        problems = [
            Diagnostic("/data" + "".join(f"/{p}" for p in err.absolute_path), err.message)
            for err in validator.iter_errors(decision.data or {})
        ]
        if problems:
            raise ValidationFailedError(problems)


def _check_open(
    store: Store, record: inbox.TaskRecord, principal: Principal, *, four_eyes: bool
) -> None:
    if record.status != "open":
        raise TaskClosedError(f"task {record.id} is already {record.status}")
    with store.session(read_only=True) as session:
        run = inbox.root_run(session, record.run_id)
    if run is not None and run.status in _TERMINAL:
        raise TaskClosedError(f"run {run.run_id} has already ended {run.status}")
    if four_eyes and record.started_by and record.started_by == principal.actor:
        raise FourEyesError("the starter of a run may not decide its tasks (four-eyes)")
    if not is_assignee(principal, record):
        raise PermissionDeniedError(f"{principal.actor} is not an assignee of task {record.id}")
    if record.claimed_by not in {None, principal.actor}:
        raise ConflictError(f"task {record.id} is claimed by {record.claimed_by}")


async def decide(
    cp: TaskPlane,
    principal: Principal,
    task_id: str,
    decision: Decision,
    *,
    four_eyes: bool = True,
) -> inbox.TaskRecord:
    """Decide a task: checked here, judged by the run (the ``decide`` update), then recorded.

    ``four_eyes`` is the operator's ``TaskSettings.four_eyes``: the run enforces the same rule
    with the value its task was opened with, this check only gives the clear 403 first.
    """
    record = get_task(cp.store, task_id)
    _check_open(cp.store, record, principal, four_eyes=four_eyes)
    _check_decision(record, decision)
    handle = cp.client.get_workflow_handle(record.workflow_id)
    update = TaskDecision(
        task_id=task_id,
        outcome=decision.outcome,
        by=principal.actor,
        comment=decision.comment,
        data=decision.data,
        channel=decision.channel,
    )
    try:
        result = await handle.execute_update(DECIDE_UPDATE, update, result_type=dict)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            kind = _REFUSALS.get(cause.type or "", ConflictError)
            raise kind(cause.message) from None
        raise ConflictError(f"the run refused the decision: {cause}") from None
    except RPCError as err:
        if err.status in {RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION}:
            raise TaskClosedError(f"run {record.run_id} has already ended") from None
        raise EngineError(f"cannot reach the run: {err.message}") from None
    return close_task(cp.store, TaskClose(task_id, "decided", result, decision.channel))
