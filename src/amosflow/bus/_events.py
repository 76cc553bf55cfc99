"""CloudEvents 1.0 for runs, steps and triggers, and the NATS subjects they travel on.

The CloudEvent ``subject`` attribute names what the event is about: the run id for run and
step events, the trigger name for trigger events. Details (step id, error, ...) go in ``data``.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Final

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

if TYPE_CHECKING:
    from datetime import datetime

RUN_STARTED: Final = "io.amosflow.run.started"
RUN_COMPLETED: Final = "io.amosflow.run.completed"
RUN_FAILED: Final = "io.amosflow.run.failed"
STEP_STARTED: Final = "io.amosflow.step.started"
STEP_COMPLETED: Final = "io.amosflow.step.completed"
STEP_FAILED: Final = "io.amosflow.step.failed"
TRIGGER_FIRED: Final = "io.amosflow.trigger.fired"
TASK_CREATED: Final = "io.amosflow.task.created"
TASK_DECIDED: Final = "io.amosflow.task.decided"
TASK_ESCALATED: Final = "io.amosflow.task.escalated"

RUN_TYPES: Final = (RUN_STARTED, RUN_COMPLETED, RUN_FAILED)
STEP_TYPES: Final = (STEP_STARTED, STEP_COMPLETED, STEP_FAILED)
TASK_TYPES: Final = (TASK_CREATED, TASK_DECIDED, TASK_ESCALATED)
EVENT_TYPES: Final = (*RUN_TYPES, *STEP_TYPES, TRIGGER_FIRED, *TASK_TYPES)

SUBJECT_PREFIX: Final = "amos"
ALL_SUBJECTS: Final = "amos.>"
CONTENT_TYPE: Final = "application/cloudevents+json"

_TYPE_PREFIX = "io.amosflow."
# Percent-encoding (of '%' too) keeps distinct ids on distinct subjects.
_UNSAFE_TOKEN = re.compile(r"[%.*>\s\x00-\x1f\x7f]")
_FORMAT = JSONFormat()


def cloud_event(
    type_: str,
    *,
    source: str,
    subject: str,
    data: dict[str, Any],
    id: str | None = None,  # noqa: A002 - the CloudEvents attribute is called id
    time: datetime | None = None,
) -> dict[str, Any]:
    """Build a validated CloudEvents 1.0 structured-mode JSON object, ready for the outbox."""
    attributes: dict[str, Any] = {
        "type": type_,
        "source": source,
        "subject": subject,
        "datacontenttype": "application/json",
    }
    if id is not None:
        attributes["id"] = id
    if time is not None:
        attributes["time"] = time
    event = CloudEvent(attributes, data)
    encoded: dict[str, Any] = json.loads(_FORMAT.write(event))
    return encoded


def parse_event(payload: bytes | str) -> CloudEvent:
    """Read a structured-mode JSON CloudEvent, validating its attributes."""
    event = _FORMAT.read(CloudEvent, payload)
    assert isinstance(event, CloudEvent)
    return event


def subject_token(value: str) -> str:
    """Turn any id into one NATS subject token (no '.', '*', '>' or whitespace)."""
    if not value:
        return "%"  # never the output of encoding, so still distinct
    return _UNSAFE_TOKEN.sub(lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), value)


def subject_for(type_: str, key: str) -> str:
    """The NATS subject of an event: ``key`` is the run id (trigger name, task id for those)."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    kind, _, verb = type_.removeprefix(_TYPE_PREFIX).partition(".")
    token = subject_token(key)
    if kind == "trigger":
        return f"{SUBJECT_PREFIX}.trigger.{token}.{verb}"
    if kind == "task":
        return f"{SUBJECT_PREFIX}.task.{token}.{verb}"
    if kind == "step":
        return f"{SUBJECT_PREFIX}.run.{token}.step.{verb}"
    return f"{SUBJECT_PREFIX}.run.{token}.{verb}"
