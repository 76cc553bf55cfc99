"""The event bus: an embedded NATS JetStream server, CloudEvents, and the publisher.

The outbox relay lives in ``amosflow.bus._relay`` because it also needs the store.

Names are imported on first use: `amos up`'s supervisor starts the embedded server
(``amosflow.bus.embedded``) and must not carry the NATS client and the store for the node's
whole life, as importing the publisher and the relay here would make it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amosflow._lazy import exports

if TYPE_CHECKING:
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

_HOMES = {
    "ALL_SUBJECTS": "_events",
    "TASK_CREATED": "_events",
    "TASK_DECIDED": "_events",
    "TASK_ESCALATED": "_events",
    "cloud_event": "_events",
    "parse_event": "_events",
    "subject_for": "_events",
    "subject_token": "_events",
    "DEFAULT_STREAM": "_publisher",
    "Ack": "_publisher",
    "Bus": "_publisher",
    "connect_bus": "_publisher",
    "OutboxRelay": "_relay",
    "EmbeddedNats": "embedded",
    "configured_url": "embedded",
    "running_url": "embedded",
}


__getattr__ = exports(__name__, _HOMES, globals(), modules={"events": "_events"})


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
