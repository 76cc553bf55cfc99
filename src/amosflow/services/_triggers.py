"""Triggers as use cases: save (and sync the schedule), fire, and accept webhook deliveries."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from amosflow.bus import cloud_event, subject_for
from amosflow.catalog import register_kind
from amosflow.errors import Diagnostic, NotFoundError, ValidationFailedError
from amosflow.services import _auditing as auditing
from amosflow.services import _runs as runs
from amosflow.store import outbox
from amosflow.triggers import ScheduleTrigger, WebhookTrigger, parse_trigger, schedules

if TYPE_CHECKING:
    from amosflow.catalog import Version
    from amosflow.services._runs import ControlPlane
    from amosflow.store import RunRecord

KIND = "triggers"
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")


def validate_trigger(document: Any) -> ScheduleTrigger | WebhookTrigger:
    """Validate a trigger document, reporting every problem with its JSON Pointer."""
    try:
        return parse_trigger(document)
    except ValidationError as err:
        found = []
        for e in err.errors(include_url=False):
            loc = [str(p) for p in e["loc"] if p not in {"schedule", "webhook"}]
            found.append(Diagnostic("/" + "/".join(loc), e["msg"]))
        raise ValidationFailedError(found) from None


def _check_saved(name: str, document: dict[str, Any]) -> None:
    trigger = validate_trigger(document)
    if trigger.name != name:
        raise ValidationFailedError(
            [Diagnostic("/name", f"must be {name!r}, the name it is saved as")]
        )


register_kind(KIND, _check_saved)


def load(cp: ControlPlane, name: str, folder: str) -> ScheduleTrigger | WebhookTrigger:
    """The latest definition of a trigger of ``folder``."""
    return validate_trigger(cp.catalog.get(KIND, name, folder=folder).document)


async def save(
    cp: ControlPlane,
    document: Any,
    *,
    author: str,
    message: str,
    actor: str = auditing.API_ACTOR,
    folder: str,
) -> Version:
    """Validate, commit to the catalog, then make Temporal's schedule match.

    The trigger's flow is its own folder's: a trigger can start nothing of another folder.
    """
    trigger = validate_trigger(document)
    try:
        cp.catalog.get("flows", trigger.flow, trigger.version, folder=folder)
    except NotFoundError:
        where = trigger.flow + (f" at version {trigger.version}" if trigger.version else "")
        raise ValidationFailedError(
            [Diagnostic("/flow", f"no flow {where} in the trigger's folder")]
        ) from None
    version = auditing.save(
        cp.store,
        cp.catalog,
        KIND,
        trigger.name,
        document,
        author=author,
        message=message,
        actor=actor,
        folder=folder,
    )
    if isinstance(trigger, ScheduleTrigger):
        queue = schedules.control_queue(cp.settings.task_queue)
        await schedules.sync(cp.client, trigger, folder, queue)
    return version


async def delete(
    cp: ControlPlane,
    name: str,
    *,
    folder: str,
    author: str,
    message: str,
    actor: str = auditing.API_ACTOR,
) -> Version:
    """Remove a trigger from the catalog and its schedule from Temporal."""
    trigger = load(cp, name, folder)
    version = auditing.delete(
        cp.store,
        cp.catalog,
        KIND,
        name,
        folder=folder,
        author=author,
        message=message,
        actor=actor,
    )
    if isinstance(trigger, ScheduleTrigger):
        await schedules.remove(cp.client, name, folder)
    return version


def owned_run_id(folder: str, trigger: str, ref: str) -> str:
    """The id of a run a trigger starts: ``<folder>::<trigger>::<ref>``, its alone.

    No caller can choose an id with ``::`` after its folder (see ``runs._check_run_id``), so
    a scheduled fire or a webhook delivery can never find its run id taken in advance.
    """
    return _UNSAFE.sub("-", f"{folder}::{trigger}::{ref}")[:128]


def _announce(cp: ControlPlane, trigger: str, record: RunRecord) -> None:
    event = cloud_event(
        "io.amosflow.trigger.fired",
        source=runs.EVENT_SOURCE,
        subject=trigger,
        data={"trigger": trigger, "run_id": record.run_id, "flow": record.flow_name},
        id=f"{trigger}/{record.run_id}",
    )
    with cp.store.session() as session:
        outbox.enqueue(session, subject_for("io.amosflow.trigger.fired", trigger), event)


async def fire_schedule(cp: ControlPlane, fire: schedules.Fire) -> RunRecord:
    """Start the run of one schedule fire; a repeated fire finds the run already there."""
    trigger = load(cp, fire.trigger, fire.folder)
    if not isinstance(trigger, ScheduleTrigger):
        raise NotFoundError(f"trigger {fire.trigger!r} is not a schedule")
    record = await runs.start(
        cp,
        runs.StartRequest(
            flow=trigger.flow,
            version=trigger.version,
            inputs=dict(trigger.inputs),
            environment=trigger.environment,
            trigger="schedule",
            trigger_name=trigger.name,
            trigger_ref=fire.run_id,
            run_id=_UNSAFE.sub("-", fire.run_id),
            actor=f"trigger:{trigger.name}",
            folder=fire.folder,
        ),
    )
    _announce(cp, trigger.name, record)
    return record


async def accept_delivery(
    cp: ControlPlane,
    trigger: WebhookTrigger,
    folder: str,
    delivery_id: str,
    inputs: dict[str, Any],
) -> RunRecord:
    """Start the run of one webhook delivery; the delivery id names the run, so repeats join it."""
    run_id = owned_run_id(folder, trigger.name, delivery_id)
    record = await runs.start(
        cp,
        runs.StartRequest(
            flow=trigger.flow,
            version=trigger.version,
            inputs=inputs,
            environment=trigger.environment,
            trigger="webhook",
            trigger_name=trigger.name,
            trigger_ref=delivery_id,
            run_id=run_id,
            actor=f"trigger:{trigger.name}",
            folder=folder,
        ),
    )
    _announce(cp, trigger.name, record)
    if trigger.respond == "result":
        record = await runs.wait_for_end(cp, record, timedelta(seconds=trigger.wait_s))
    return record
