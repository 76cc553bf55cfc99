"""Cron triggers as Temporal Schedules.

A schedule does not start the flow itself: it starts a tiny `amos.trigger` workflow whose one
activity asks the control plane to start the run. So a scheduled run goes through the same
door as every other run (latest flow version, Effective Config resolved at dispatch, inputs
validated, recorded once), and its run id is derived from the schedule's fire, so a retried
fire never starts a second run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from temporalio import activity, workflow
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleBackfill,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import RetryPolicy
from temporalio.service import RPCError, RPCStatusCode

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from temporalio.client import Client

    from amosflow.triggers._models import ScheduleTrigger

TRIGGER_WORKFLOW = "amos.trigger"
FIRE_ACTIVITY = "amos.fire_trigger"

_OVERLAP = {
    "skip": ScheduleOverlapPolicy.SKIP,
    "buffer_one": ScheduleOverlapPolicy.BUFFER_ONE,
    "buffer_all": ScheduleOverlapPolicy.BUFFER_ALL,
    "cancel_other": ScheduleOverlapPolicy.CANCEL_OTHER,
    "terminate_other": ScheduleOverlapPolicy.TERMINATE_OTHER,
    "allow_all": ScheduleOverlapPolicy.ALLOW_ALL,
}


@dataclass
class Fire:
    """One fire of a trigger: its name, its folder and the id that names the run it starts."""

    trigger: str
    run_id: str
    folder: str = "default"


def trigger_ref(folder: str, name: str) -> str:
    """How a schedule names its trigger: ``<folder>::<name>`` (folder names have no colon)."""
    return f"{folder}::{name}"


def parse_ref(ref: str) -> tuple[str, str]:
    """The folder and name of a trigger ref; a bare name (an older schedule) is `default`'s."""
    folder, sep, name = ref.partition("::")
    return (folder, name) if sep else ("default", ref)


@workflow.defn(name=TRIGGER_WORKFLOW)
class TriggerWorkflow:
    """Started by a schedule; asks the control plane to start the trigger's run."""

    @workflow.run
    async def run(self, trigger: str) -> str:
        """Fire once; the run id is this workflow's id, unique per scheduled time."""
        # The schedule names this workflow `<folder>::<trigger>::fire-<time>`, and the run is
        # `<folder>::<trigger>::<time>`; a schedule made before folders were namespaces
        # passes a bare name and names it `<trigger>-fire-<time>`.
        fire_id = workflow.info().workflow_id
        folder, name = parse_ref(trigger)
        if "::" in trigger:
            run_id = fire_id.replace(f"{trigger}::fire-", f"{trigger}::", 1)
        else:
            run_id = fire_id.replace(f"{trigger}-fire-", f"{trigger}-", 1)
        fire = Fire(trigger=name, run_id=run_id, folder=folder)
        result: str = await workflow.execute_activity(
            FIRE_ACTIVITY,
            fire,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
        )
        return result


def fire_activity(start: Callable[[Fire], Awaitable[str]]) -> Callable[[Fire], Awaitable[str]]:
    """The activity behind `amos.trigger`, bound to the control plane's start function."""

    @activity.defn(name=FIRE_ACTIVITY)
    async def fire(fire: Fire) -> str:
        return await start(fire)

    return fire


def control_queue(flow_queue: str) -> str:
    """The task queue of the control-plane worker that serves a node's flow queue."""
    return f"{flow_queue}.control"


def schedule_id(name: str, folder: str | None) -> str:
    """The Temporal Schedule id of a trigger (``folder`` None: as named before folders)."""
    return f"amos-trigger-{name}" if folder is None else f"amos-trigger-{trigger_ref(folder, name)}"


def _schedule(trigger: ScheduleTrigger, folder: str, queue: str) -> Schedule:
    ref = trigger_ref(folder, trigger.name)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            TRIGGER_WORKFLOW,
            ref,
            id=f"{ref}::fire",
            task_queue=queue,
        ),
        spec=ScheduleSpec(cron_expressions=[trigger.cron], time_zone_name=trigger.timezone),
        policy=SchedulePolicy(overlap=_OVERLAP[trigger.overlap]),
        state=ScheduleState(paused=trigger.paused, note=trigger.description or ""),
    )


async def sync(client: Client, trigger: ScheduleTrigger, folder: str, queue: str) -> None:
    """Create or update the trigger's schedule so it matches the definition."""
    wanted = _schedule(trigger, folder, queue)
    try:
        await client.create_schedule(schedule_id(trigger.name, folder), wanted)
    except ScheduleAlreadyRunningError:

        async def replace(_input: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=wanted)

        await client.get_schedule_handle(schedule_id(trigger.name, folder)).update(replace)


async def remove(client: Client, name: str, folder: str | None) -> None:
    """Delete the trigger's schedule if it has one (``folder`` None: one made before folders)."""
    try:
        await client.get_schedule_handle(schedule_id(name, folder)).delete()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise


async def pause(client: Client, name: str, folder: str, *, paused: bool) -> None:
    """Pause or resume the trigger's schedule."""
    handle = client.get_schedule_handle(schedule_id(name, folder))
    if paused:
        await handle.pause(note="paused through the API")
    else:
        await handle.unpause(note="resumed through the API")


async def backfill(
    client: Client, name: str, folder: str, start_at: datetime, end_at: datetime
) -> None:
    """Fire the schedule for every time it would have fired between the two instants."""
    handle = client.get_schedule_handle(schedule_id(name, folder))
    await handle.backfill(
        ScheduleBackfill(
            start_at=start_at.astimezone(UTC),
            end_at=end_at.astimezone(UTC),
            overlap=ScheduleOverlapPolicy.ALLOW_ALL,
        )
    )
