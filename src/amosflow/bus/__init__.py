"""The event bus: an embedded NATS JetStream server, CloudEvents, and the publisher.

The outbox relay lives in ``amosflow.bus.relay`` because it also needs the store.
"""

from amosflow.bus.embedded import EmbeddedNats, configured_url, running_url
from amosflow.bus.events import cloud_event, parse_event, subject_for
from amosflow.bus.publisher import DEFAULT_STREAM, Ack, Bus, connect_bus

__all__ = [
    "DEFAULT_STREAM",
    "Ack",
    "Bus",
    "EmbeddedNats",
    "cloud_event",
    "configured_url",
    "connect_bus",
    "parse_event",
    "running_url",
    "subject_for",
]
