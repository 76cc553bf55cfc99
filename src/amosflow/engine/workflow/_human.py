"""Human steps inside the interpreter: open an inbox task, then wait durably for a decision.

The task's row is written by an activity on the control plane's queue (idempotent, keyed by
run, step and iteration). A decision arrives as the ``decide`` workflow update: updates are
applied one at a time, and the validator refuses a task that is not open here, one already
decided, an outcome the task kind does not have, and (four-eyes) the run's own starter, so of
two people deciding at once exactly one wins. The SLA is a durable timer. Nothing here reads
a clock or does I/O; the workflow hands in ``workflow.now()`` through Temporal's API.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy as TemporalRetry
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

from amosflow.engine.types import (
    TASK_CLOSE_ACTIVITY,
    TASK_ESCALATE_ACTIVITY,
    TASK_NOTIFY_ACTIVITY,
    TASK_OPEN_ACTIVITY,
    TaskClose,
    TaskDecision,
    TaskEscalation,
    TaskNotice,
    TaskOpen,
    TaskOpened,
)
from amosflow.engine.workflow._state import StepFailedError

#: The outcomes each task kind accepts.
OUTCOMES: dict[str, tuple[str, ...]] = {
    "approval": ("approved", "rejected"),
    "review": ("approved", "rejected"),
    "form": ("submitted",),
}
SYSTEM_ACTOR = "system"
_INBOX_TIMEOUT = timedelta(seconds=30)
# The inbox must learn of every task and its end: retry until the control plane answers.
_INBOX_RETRY = TemporalRetry(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
# A notification is best effort: a few tries, then the run goes on without it.
_NOTIFY_RETRY = TemporalRetry(initial_interval=timedelta(seconds=1), maximum_attempts=3)


def task_id_for(run_id: str, step_id: str, iteration: str) -> str:
    """The task id of one human step iteration: stable across replays, retries and restarts."""
    digest = hashlib.sha256(f"{run_id}/{step_id}/{iteration}".encode()).hexdigest()
    return f"t-{digest[:24]}"


@dataclass
class PendingTask:
    """A task this run waits on, and the decision once one was accepted."""

    task_id: str
    kind: str
    started_by: str | None = None
    four_eyes: bool = True
    #: False until the inbox row exists and told us who started the run.
    ready: bool = False
    decision: dict[str, Any] | None = None
    channel: str = "api"


def refusal(pending: PendingTask | None, decision: TaskDecision) -> ApplicationError | None:
    """Why this run refuses ``decision`` (None when it accepts it); the update's only rule."""
    if pending is None:
        return _refused(f"task {decision.task_id} is not open in this run", "TaskNotOpen")
    if pending.decision is not None:
        return _refused(f"task {decision.task_id} is already decided", "TaskAlreadyDecided")
    if decision.outcome not in OUTCOMES[pending.kind]:
        allowed = ", ".join(OUTCOMES[pending.kind])
        return _refused(f"a {pending.kind} task takes one of: {allowed}", "InvalidOutcome")
    if pending.ready and pending.four_eyes and decision.by == pending.started_by:
        return _refused("the starter of a run may not decide its tasks (four-eyes)", "FourEyes")
    return None


def _refused(message: str, type_: str) -> ApplicationError:
    return ApplicationError(message, {"type": type_}, type=type_, non_retryable=True)


@dataclass
class HumanWait:
    """One human step to run: its task, SLA and what a breach does."""

    task: TaskOpen
    sla: timedelta | None
    escalate_to: list[str]
    on_timeout: str
    control_queue: str


class HumanTasks:
    """The tasks a run waits on, and how it waits for each."""

    def __init__(self) -> None:
        self.pending: dict[str, PendingTask] = {}

    def refusal(self, decision: TaskDecision) -> ApplicationError | None:
        """Why this run refuses ``decision`` now, or None."""
        return refusal(self.pending.get(decision.task_id), decision)

    async def accept(self, decision: TaskDecision) -> dict[str, Any]:
        """Record an accepted decision and return the step output it becomes.

        A decision can overtake the reply of the activity that wrote the inbox row; it waits
        for that reply (four-eyes needs the run's starter), then is judged with no await in
        between, so of two decisions in flight only the first one applied wins.
        """
        waiting = self.pending.get(decision.task_id)
        if waiting is not None and not waiting.ready:
            await workflow.wait_condition(
                lambda: waiting.ready or decision.task_id not in self.pending
            )
        pending = self.pending.get(decision.task_id)
        problem = refusal(pending, decision)
        if problem is not None:
            raise problem
        assert pending is not None
        pending.decision = {
            "outcome": decision.outcome,
            "comment": decision.comment,
            "by": decision.by,
            "at": workflow.now().isoformat(),
            "data": decision.data,
        }
        pending.channel = decision.channel
        return pending.decision

    async def wait(self, spec: HumanWait, step_id: str) -> dict[str, Any]:
        """Open the task, wait for a decision or the SLA, close the task; return the output."""
        task = spec.task
        pending = self.pending[task.task_id] = PendingTask(task.task_id, task.kind)
        try:
            opened: TaskOpened = await self._inbox(
                spec, TASK_OPEN_ACTIVITY, task, result_type=TaskOpened
            )
            pending.started_by, pending.four_eyes = opened.started_by, opened.four_eyes
            pending.ready = True
            await self._notify(spec, TaskNotice(task.task_id, "created"))
            if not await self._decided(pending, spec.sla):
                await self._breach(spec, pending, step_id)
        except asyncio.CancelledError:
            await self._inbox(spec, TASK_CLOSE_ACTIVITY, TaskClose(task.task_id, "cancelled"))
            raise
        finally:
            self.pending.pop(task.task_id, None)
        assert pending.decision is not None
        await self._inbox(
            spec,
            TASK_CLOSE_ACTIVITY,
            TaskClose(task.task_id, "decided", pending.decision, pending.channel),
        )
        return pending.decision

    async def _decided(self, pending: PendingTask, limit: timedelta | None) -> bool:
        try:
            await workflow.wait_condition(lambda: pending.decision is not None, timeout=limit)
        except TimeoutError:
            return pending.decision is not None
        return True

    async def _breach(self, spec: HumanWait, pending: PendingTask, step_id: str) -> None:
        """The SLA passed undecided: escalate, and apply ``on_timeout`` when that lapses too."""
        if spec.escalate_to or spec.on_timeout == "escalate":
            escalation = TaskEscalation(spec.task.task_id, list(spec.escalate_to))
            await self._inbox(spec, TASK_ESCALATE_ACTIVITY, escalation)
            await self._notify(spec, TaskNotice(spec.task.task_id, "escalated"))
            # `escalate` waits for the wider audience as long as it takes; otherwise the
            # escalation gets one more SLA period before `on_timeout` applies.
            limit = None if spec.on_timeout == "escalate" else spec.sla
            if await self._decided(pending, limit):
                return
        if spec.on_timeout in {"approve", "reject"}:
            pending.decision = {
                "outcome": "approved" if spec.on_timeout == "approve" else "rejected",
                "comment": f"decided by on_timeout after the SLA of {spec.sla}",
                "by": SYSTEM_ACTOR,
                "at": workflow.now().isoformat(),
                "data": None,
            }
            pending.channel = "sla"
            return
        await self._inbox(spec, TASK_CLOSE_ACTIVITY, TaskClose(spec.task.task_id, "expired"))
        raise StepFailedError(
            f"task {spec.task.title!r} was not decided within its SLA", "Timeout", step_id
        )

    async def _inbox(
        self, spec: HumanWait, name: str, arg: Any, *, result_type: type[Any] | None = None
    ) -> Any:
        return await workflow.execute_activity(
            name,
            arg,
            result_type=result_type,
            task_queue=spec.control_queue,
            start_to_close_timeout=_INBOX_TIMEOUT,
            retry_policy=_INBOX_RETRY,
        )

    async def _notify(self, spec: HumanWait, notice: TaskNotice) -> None:
        try:
            await workflow.execute_activity(
                TASK_NOTIFY_ACTIVITY,
                notice,
                task_queue=spec.control_queue,
                start_to_close_timeout=_INBOX_TIMEOUT,
                retry_policy=_NOTIFY_RETRY,
            )
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                raise asyncio.CancelledError from err
            workflow.logger.warning("notifications of task %s failed", notice.task_id)
