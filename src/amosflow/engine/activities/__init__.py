"""Action implementations, one module per action family, wrapped as Temporal activities."""

from amosflow.engine.activities.base import ActionContext, build_activities, implementation

__all__ = ["ActionContext", "build_activities", "implementation"]
