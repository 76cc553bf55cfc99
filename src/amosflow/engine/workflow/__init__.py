"""The deterministic interpreter workflow; imports nothing with side effects."""

from amosflow.engine.workflow.interpreter import FlowWorkflow

__all__ = ["FlowWorkflow"]
