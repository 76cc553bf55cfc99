"""The event bus: an embedded NATS JetStream server, CloudEvents, and the publisher.

The outbox relay lives in ``amosflow.bus._relay`` because it also needs the store.
"""

from amosflow.bus import _events as events
from amosflow.bus._events import (
    ALL_SUBJECTS,
    TASK_CREATED,
    TASK_DECIDED,
    TASK_ESCALATED,
    cloud_event,
    parse_event,
    subject_for,
    subject_token,
)
from amosflow.bus._publisher import DEFAULT_STREAM, Ack, Bus, connect_bus
from amosflow.bus._relay import OutboxRelay
from amosflow.bus.embedded import EmbeddedNats, configured_url, running_url

__all__ = [
    "ALL_SUBJECTS",
    "DEFAULT_STREAM",
    "TASK_CREATED",
    "TASK_DECIDED",
    "TASK_ESCALATED",
    "Ack",
    "Bus",
    "EmbeddedNats",
    "OutboxRelay",
    "cloud_event",
    "configured_url",
    "connect_bus",
    "events",
    "parse_event",
    "running_url",
    "subject_for",
    "subject_token",
]
