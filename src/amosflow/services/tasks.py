"""Human tasks: the inbox the workflow writes, and listing, claiming and deciding its tasks.

A decision goes to the run first, as the workflow's ``decide`` update: the run is the
judge of who wins, so two people deciding at once cannot both succeed. The inbox row is then
closed from the update's result. The workflow's own closing activity closes it too, so a
crash between the two heals; whichever call closes the row writes the audit record and the
``task.decided`` event, exactly once (decision 0033).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from amosflow import audit
from amosflow.bus.events import TASK_CREATED, TASK_DECIDED, TASK_ESCALATED, cloud_event, subject_for
from amosflow.config import TaskSettings
from amosflow.engine.types import DECIDE_UPDATE, TaskClose, TaskDecision, TaskEscalation, TaskOpen
from amosflow.errors import (
    ConflictError,
    Diagnostic,
    EngineError,
    FourEyesError,
    NotFoundError,
    PermissionDeniedError,
    TaskClosedError,
    ValidationFailedError,
)
from amosflow.identity import ALL_FOLDERS, allows, authorize, folder_scope
from amosflow.store import outbox
from amosflow.store import runs as run_store
from amosflow.store import tasks as task_store
from amosflow.store.paging import Page

if TYPE_CHECKING:
    from amosflow.identity import Principal
    from amosflow.services.runs import ControlPlane
    from amosflow.store import Store

EVENT_SOURCE = "urn:amosflow:control-plane"
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


# -- written by the run's activities ---------------------------------------------------------


def _root_run(session: Any, run_id: str) -> run_store.RunRecord | None:
    """The recorded run a task belongs to; a child run's id starts with its parent's."""
    for candidate in (run_id, run_id.split("/", 1)[0]):
        try:
            return run_store.get_run(session, candidate)
        except NotFoundError:
            continue
    return None


def _event(session: Any, type_: str, record: task_store.TaskRecord, **extra: Any) -> None:
    data = {
        "task_id": record.id,
        "run_id": record.run_id,
        "step": record.step_id,
        "flow": record.flow,
        "folder": record.folder,
        "kind": record.kind,
        "status": record.status,
        **extra,
    }
    event = cloud_event(type_, source=EVENT_SOURCE, subject=record.id, data=data)
    outbox.enqueue(session, subject_for(type_, record.id), event)


def open_task(store: Store, task: TaskOpen) -> tuple[task_store.TaskRecord, bool]:
    """Write the row of a new task once, with its `task.created` event; repeat calls read it."""
    with store.session() as session:
        run = _root_run(session, task.run_id)
        record = task_store.TaskRecord(
            id=task.task_id,
            run_id=task.run_id,
            workflow_id=task.workflow_id or task.run_id,
            step_id=task.step_id,
            iteration=task.iteration,
            flow=task.flow or (run.flow_name if run else ""),
            folder=run.folder if run else "default",
            kind=task.kind,
            title=task.title[:500],
            assignees=list(dict.fromkeys(task.assignees)),
            form=task.form,
            started_by=run.started_by if run else None,
            due_at=datetime.fromisoformat(task.due_at) if task.due_at else None,
        )
        created = task_store.insert(session, record)
        stored = task_store.get(session, task.task_id)
        if created:
            _event(session, TASK_CREATED, stored, title=stored.title, assignees=stored.assignees)
    return stored, created


def four_eyes() -> bool:
    """Whether four-eyes is on (``AMOS_TASKS_FOUR_EYES``, default true)."""
    return TaskSettings().four_eyes


def escalate_task(store: Store, escalation: TaskEscalation) -> task_store.TaskRecord:
    """Mark an open task escalated and widen its assignees, once, with `task.escalated`."""
    with store.session() as session:
        row = task_store.row(session, escalation.task_id, lock=True)
        if row.status == "open" and not row.escalated:
            row.assignees = list(dict.fromkeys([*row.assignees, *escalation.add_assignees]))
            row.escalated = True
            session.flush()
            record = task_store.TaskRecord.model_validate(row)
            _event(session, TASK_ESCALATED, record, assignees=record.assignees)
            audit.append(
                session,
                actor="service:system",
                action="tasks.escalate",
                resource=f"tasks/{record.id}",
                folder=record.folder,
                details={"run_id": record.run_id, "added": escalation.add_assignees},
            )
        return task_store.TaskRecord.model_validate(row)


def close_task(store: Store, close: TaskClose) -> task_store.TaskRecord:
    """Close an open task (decided, expired or cancelled); the closing call audits and announces.

    Called by the API from the update's result and by the workflow once the step is over;
    the second call finds the row closed and changes nothing.
    """
    with store.session() as session:
        record, moved = task_store.close(session, close.task_id, close.status, close.decision)
        if moved:
            decision = close.decision or {}
            actor = str(decision.get("by") or "service:system")
            audit.append(
                session,
                actor=actor,
                action="tasks.decide" if close.status == "decided" else f"tasks.{close.status}",
                resource=f"tasks/{record.id}",
                folder=record.folder,
                details={
                    "run_id": record.run_id,
                    "step": record.step_id,
                    "outcome": decision.get("outcome"),
                    "channel": close.channel,
                },
            )
            _event(session, TASK_DECIDED, record, outcome=decision.get("outcome"), by=actor)
    return record


# -- what people do through the API ----------------------------------------------------------


def task_resource(record: task_store.TaskRecord) -> dict[str, Any]:
    """What ABAC conditions see of a task as ``resource``."""
    return {
        "kind": "task",
        "id": record.id,
        "run_id": record.run_id,
        "flow": record.flow,
        "folder": record.folder,
        "started_by": record.started_by,
    }


def guard_task(
    store: Store, principal: Principal, permission: str, task_id: str
) -> task_store.TaskRecord:
    """Load a task and authorize ``permission`` on it; one the caller can't see is not found."""
    with store.session(read_only=True) as session:
        record = task_store.get(session, task_id)
    authorize(
        principal,
        permission,
        folder=record.folder,
        resource=task_resource(record),
        missing=f"task {task_id!r} not found",
    )
    return record


def _assignee_parts(assignee: str) -> tuple[str, str]:
    kind, sep, name = assignee.partition(":")
    return (kind, name) if sep and kind in {"user", "role", "group"} else ("user", assignee)


def is_assignee(principal: Principal, record: task_store.TaskRecord) -> bool:
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


def list_tasks(store: Store, principal: Principal, query: TaskQuery) -> Page[task_store.TaskRecord]:
    """The tasks the caller may see, newest first; ``mine`` keeps the caller's own.

    A page can hold fewer than ``limit`` tasks when filters in Python hide some (ABAC
    conditions, ``mine``); follow ``next_cursor`` until it is null.
    """
    scope = folder_scope(principal, "approvals.read")
    with store.session(read_only=True) as session:
        page = task_store.list_tasks(
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
) -> task_store.TaskRecord:
    """Take an open task so others see it is being handled; 409 if someone else holds it."""
    record = guard_task(store, principal, "approvals.decide", task_id)
    if not is_assignee(principal, record):
        raise PermissionDeniedError(f"{principal.actor} is not an assignee of task {task_id}")
    with store.session() as session:
        row = task_store.row(session, task_id, lock=True)
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
        return task_store.TaskRecord.model_validate(row)


def unclaim(
    store: Store, principal: Principal, task_id: str, channel: str = "api"
) -> task_store.TaskRecord:
    """Give a claimed task back to its assignees; only its claimer may."""
    guard_task(store, principal, "approvals.decide", task_id)
    with store.session() as session:
        row = task_store.row(session, task_id, lock=True)
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
        return task_store.TaskRecord.model_validate(row)


@dataclass(frozen=True)
class Decision:
    """What a person decides: the outcome, a comment and, for a form, the submitted data."""

    outcome: str
    comment: str = ""
    data: dict[str, Any] | None = None
    channel: str = "api"


def _check_decision(record: task_store.TaskRecord, decision: Decision) -> None:
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


def _check_open(cp: ControlPlane, record: task_store.TaskRecord, principal: Principal) -> None:
    if record.status != "open":
        raise TaskClosedError(f"task {record.id} is already {record.status}")
    with cp.store.session(read_only=True) as session:
        run = _root_run(session, record.run_id)
    if run is not None and run.status in _TERMINAL:
        raise TaskClosedError(f"run {run.run_id} has already ended {run.status}")
    if four_eyes() and record.started_by and record.started_by == principal.actor:
        raise FourEyesError("the starter of a run may not decide its tasks (four-eyes)")
    if not is_assignee(principal, record):
        raise PermissionDeniedError(f"{principal.actor} is not an assignee of task {record.id}")
    if record.claimed_by not in {None, principal.actor}:
        raise ConflictError(f"task {record.id} is claimed by {record.claimed_by}")


async def decide(
    cp: ControlPlane, principal: Principal, task_id: str, decision: Decision
) -> task_store.TaskRecord:
    """Decide a task: checked here, judged by the run (the ``decide`` update), then recorded."""
    record = guard_task(cp.store, principal, "approvals.decide", task_id)
    _check_open(cp, record, principal)
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
