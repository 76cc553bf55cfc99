"""The public surface of amosflow.bus."""

from __future__ import annotations

import amosflow.bus

EXPECTED = {
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
}


def test_exports_are_pinned() -> None:
    """The package exports exactly the names others code against, and each one exists."""
    assert set(amosflow.bus.__all__) == EXPECTED
    assert all(hasattr(amosflow.bus, name) for name in EXPECTED)
