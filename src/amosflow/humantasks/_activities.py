"""The activities behind human steps, run on the control plane's queue next to the store.

Each is idempotent: the task id is derived from run, step and iteration, opening an existing
task reads it back, and closing or escalating a task that already moved changes nothing. So
Temporal may retry any of them, and a worker or API restart heals by the retry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from amosflow.engine.types import (
    TASK_CLOSE_ACTIVITY,
    TASK_ESCALATE_ACTIVITY,
    TASK_NOTIFY_ACTIVITY,
    TASK_OPEN_ACTIVITY,
    TaskClose,
    TaskEscalation,
    TaskNotice,
    TaskOpen,
    TaskOpened,
)
from amosflow.errors import ActionError
from amosflow.humantasks import _lifecycle as lifecycle
from amosflow.humantasks._notify import notify_task

if TYPE_CHECKING:
    from collections.abc import Callable

    from amosflow.config import NotifySettings, SmtpSettings, TaskSettings
    from amosflow.store import Store


def task_activities(
    store: Store, *, tasks: TaskSettings, notify: NotifySettings, smtp: SmtpSettings
) -> list[Callable[..., Any]]:
    """The open, escalate, close and notify activities of human tasks, bound to ``store``.

    The settings come from the composition root: ``tasks`` says whether four-eyes is on,
    ``notify`` which channels announce a task, ``smtp`` the connections mail may use.
    """

    @activity.defn(name=TASK_OPEN_ACTIVITY)
    async def open_task(task: TaskOpen) -> TaskOpened:
        record, _ = lifecycle.open_task(store, task)
        return TaskOpened(
            task_id=record.id, started_by=record.started_by, four_eyes=tasks.four_eyes
        )

    @activity.defn(name=TASK_ESCALATE_ACTIVITY)
    async def escalate_task(escalation: TaskEscalation) -> None:
        lifecycle.escalate_task(store, escalation)

    @activity.defn(name=TASK_CLOSE_ACTIVITY)
    async def close_task(close: TaskClose) -> None:
        lifecycle.close_task(store, close)

    @activity.defn(name=TASK_NOTIFY_ACTIVITY)
    async def announce(notice: TaskNotice) -> list[str]:
        try:
            return await notify_task(store, notice.task_id, notice.event, notify, smtp)
        except ActionError as err:
            raise ApplicationError(
                str(err), {"type": err.type}, type=err.type, non_retryable=not err.retryable
            ) from None

    return [open_task, escalate_task, close_task, announce]
