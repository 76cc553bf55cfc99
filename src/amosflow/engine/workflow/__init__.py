"""The deterministic interpreter workflow; imports nothing with side effects."""

from amosflow.engine.workflow._interpreter import FlowWorkflow
from amosflow.engine.workflow._state import Frame

__all__ = [
    "FlowWorkflow",
    "Frame",
]
