"""Action implementations, one module per action family, wrapped as Temporal activities.

What runs an action on a worker or a runner: the registry of implementations, the wrapper
every attempt runs in, and the content-addressed store large values travel through.
"""

from amosflow.engine.activities._artifacts import SCHEME, ArtifactStore, is_ref
from amosflow.engine.activities.base import (
    ActionContext,
    Failure,
    Performer,
    build_activities,
    current_run_config,
    implementation,
    load_implementations,
)

__all__ = [
    "SCHEME",
    "ActionContext",
    "ArtifactStore",
    "Failure",
    "Performer",
    "build_activities",
    "current_run_config",
    "implementation",
    "is_ref",
    "load_implementations",
]
