"""Action implementations, one module per action family, wrapped as Temporal activities.

What runs an action on a worker or a runner: the registry of implementations, the wrapper
every attempt runs in, and the content-addressed store large values travel through. The
action families (``core``, ``http``, ``browser``, ``code``, ``file``, ``sql``, ``email``) are
loaded by name (``load_implementations``), never by importing this package, so a runner
loads only the families it runs.
"""

from amosflow.engine.activities import _base as base
from amosflow.engine.activities._artifacts import SCHEME, ArtifactStore, is_ref
from amosflow.engine.activities._base import (
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
    "base",
    "build_activities",
    "current_run_config",
    "implementation",
    "is_ref",
    "load_implementations",
]
