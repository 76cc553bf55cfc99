"""Follow a run as it goes: step events derived from the interpreter's progress query.

The workflow publishes nothing itself (that would be a side effect). For the SSE stream the
control plane long-polls the run's history and, after each workflow task, asks the progress
query what changed; the run's end and its last steps come from the timeline the workflow
reports with its result, from which the watcher also writes the bus's step events.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from amosflow.engine.client import outcome_of, progress

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from temporalio.client import WorkflowHandle

# A query can wait for a worker to pick it up; never let one hold back the run's end.
QUERY_TIMEOUT = timedelta(seconds=3)
# A run ended from outside reports no timeline: its steps are read by a worker replaying the
# history, which a busy worker may take longer to do, so the last snapshot gets more time.
FINAL_QUERY_TIMEOUT = timedelta(seconds=20)

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
        # A human step waiting on a person has started and not ended (decision 0032).
        if int(rec.get("runs", 0)) > runs_before and status not in {"running", "waiting"}:
            found.append(RunEvent("step.started", run_id, {"step": step_id, **rec}))
        kind = {"running": "step.started", "waiting": "step.started", "failed": "step.failed"}.get(
            status, "step.completed"
        )
        found.append(RunEvent(kind, run_id, {"step": step_id, **rec}))
    return found


async def _history_wakeups(handle: WorkflowHandle[Any, Any], wake: asyncio.Queue[None]) -> None:
    """Put a token on ``wake`` after every workflow task the history shows."""
    try:
        async for event in handle.fetch_history_events(wait_new_event=True):
            if event.event_type in _WAKE_UP:
                await wake.put(None)
    except RPCError:
        pass


async def final_steps(
    handle: WorkflowHandle[Any, Any], reported: dict[str, Any] | None
) -> dict[str, Any]:
    """The timeline of an ended run: as the workflow reported it, else one last query.

    Only a run ended from outside (cancelled, terminated, timed out) or one from before runs
    reported their timeline needs the query; it gets a bounded time, then the timeline is empty.
    """
    if reported is not None:
        return reported
    try:
        return await progress(handle, rpc_timeout=FINAL_QUERY_TIMEOUT)
    except (RPCError, WorkflowQueryFailedError):
        return {}


async def follow(handle: WorkflowHandle[Any, Any]) -> AsyncIterator[RunEvent]:
    """Yield step events as the run progresses, then one final `run.<status>` event.

    The end is read with the result call, which returns as soon as the run closes and carries
    the run's timeline; the history long-poll only paces the live progress queries, so a slow
    long-poll or query never delays the end.
    """
    wake: asyncio.Queue[None] = asyncio.Queue()
    watcher = asyncio.create_task(_history_wakeups(handle, wake))
    ending = asyncio.create_task(outcome_of(handle))
    seen: dict[str, Any] = {}
    try:
        while not ending.done():
            waiter = asyncio.create_task(wake.get())
            await asyncio.wait({waiter, ending}, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                waiter.cancel()
            if ending.done():
                break
            try:
                current = await progress(handle, rpc_timeout=QUERY_TIMEOUT)
            except (RPCError, WorkflowQueryFailedError):
                current = seen
            for item in diff(seen, current, handle.id):
                yield item
            seen = current
        outcome = ending.result()
    finally:
        watcher.cancel()
        if not ending.done():
            ending.cancel()
    for item in diff(seen, await final_steps(handle, outcome.steps), handle.id):
        yield item
    yield RunEvent(f"run.{outcome.result['status']}", handle.id, outcome.result)
