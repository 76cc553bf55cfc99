"""Follow a run as it goes: step events derived from the interpreter's progress query.

The workflow publishes nothing itself (that would be a side effect); instead the control plane
long-polls the run's history and, after each workflow task, asks the progress query what
changed. Both the SSE stream and the event bus are fed from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from temporalio.api.enums.v1 import EventType
from temporalio.service import RPCError

from amosflow.engine.client import progress, result_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from temporalio.client import WorkflowHandle

_WAKE_UP = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
}


@dataclass(frozen=True)
class RunEvent:
    """A step changed state (`step.started`, `step.completed`, …) or the run ended (`run.*`)."""

    kind: str
    run_id: str
    data: dict[str, Any]


def diff(previous: dict[str, Any], current: dict[str, Any], run_id: str) -> list[RunEvent]:
    """The step events that turn one progress snapshot into the next."""
    found: list[RunEvent] = []
    for step_id, rec in current.items():
        before = previous.get(step_id)
        if before == rec:
            continue
        status = str(rec.get("status"))
        runs_before = int(before.get("runs", 0)) if before else 0
        if int(rec.get("runs", 0)) > runs_before and status != "running":
            found.append(RunEvent("step.started", run_id, {"step": step_id, **rec}))
        kind = {"running": "step.started", "failed": "step.failed"}.get(status, "step.completed")
        found.append(RunEvent(kind, run_id, {"step": step_id, **rec}))
    return found


async def follow(handle: WorkflowHandle[Any, Any]) -> AsyncIterator[RunEvent]:
    """Yield step events as the run progresses, then one final `run.<status>` event."""
    seen: dict[str, Any] = {}
    try:
        async for event in handle.fetch_history_events(wait_new_event=True):
            if event.event_type not in _WAKE_UP:
                continue
            try:
                current = await progress(handle)
            except RPCError:
                continue
            for item in diff(seen, current, handle.id):
                yield item
            seen = current
    except RPCError:
        pass
    result = await result_of(handle)
    yield RunEvent(f"run.{result['status']}", handle.id, result)
