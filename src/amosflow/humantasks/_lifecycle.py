"""What the run's activities write: a task opens, may escalate, and closes exactly once.

Whichever call closes the row (the API from the update's result, or the workflow's closing
activity) writes the audit record and the ``task.decided`` event; the other finds the row
closed and changes nothing (decision 0033).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from amosflow import audit
from amosflow.bus import TASK_CREATED, TASK_DECIDED, TASK_ESCALATED, cloud_event, subject_for
from amosflow.humantasks import _inbox as inbox
from amosflow.store import outbox

if TYPE_CHECKING:
    from amosflow.engine.types import TaskClose, TaskEscalation, TaskOpen
    from amosflow.store import Store

EVENT_SOURCE = "urn:amosflow:control-plane"


def _event(session: Any, type_: str, record: inbox.TaskRecord, **extra: Any) -> None:
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


def open_task(store: Store, task: TaskOpen) -> tuple[inbox.TaskRecord, bool]:
    """Write the row of a new task once, with its `task.created` event; repeat calls read it."""
    with store.session() as session:
        run = inbox.root_run(session, task.run_id)
        record = inbox.TaskRecord(
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
        created = inbox.insert(session, record)
        stored = inbox.get(session, task.task_id)
        if created:
            _event(session, TASK_CREATED, stored, title=stored.title, assignees=stored.assignees)
    return stored, created


def escalate_task(store: Store, escalation: TaskEscalation) -> inbox.TaskRecord:
    """Mark an open task escalated and widen its assignees, once, with `task.escalated`."""
    with store.session() as session:
        row = inbox.row(session, escalation.task_id, lock=True)
        if row.status == "open" and not row.escalated:
            row.assignees = list(dict.fromkeys([*row.assignees, *escalation.add_assignees]))
            row.escalated = True
            session.flush()
            record = inbox.TaskRecord.model_validate(row)
            _event(session, TASK_ESCALATED, record, assignees=record.assignees)
            audit.append(
                session,
                actor="service:system",
                action="tasks.escalate",
                resource=f"tasks/{record.id}",
                folder=record.folder,
                details={"run_id": record.run_id, "added": escalation.add_assignees},
            )
        return inbox.TaskRecord.model_validate(row)


def close_task(store: Store, close: TaskClose) -> inbox.TaskRecord:
    """Close an open task (decided, expired or cancelled); the closing call audits and announces.

    Called by the API from the update's result and by the workflow once the step is over;
    the second call finds the row closed and changes nothing.
    """
    with store.session() as session:
        record, moved = inbox.close(session, close.task_id, close.status, close.decision)
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
