"""Core actions used by tests and examples: ``core.echo`` and ``core.sleep``."""

from __future__ import annotations

from typing import Any

from amosflow.dsl.actions._registry import ActionSpec, Duration, WithModel, register


class EchoWith(WithModel):
    """``with`` of ``core.echo``: the value to return."""

    value: Any


class SleepWith(WithModel):
    """``with`` of ``core.sleep``: how long to sleep."""

    duration: Duration


register(
    ActionSpec(
        name="core.echo",
        capability="core",
        with_model=EchoWith,
        description="Returns with.value.",
        local=True,
    )
)
register(
    ActionSpec(
        name="core.sleep",
        capability="core",
        with_model=SleepWith,
        description="Sleeps for with.duration, heartbeating.",
    )
)
