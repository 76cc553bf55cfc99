"""Exit codes of the CLI, mapped from outcomes and errors in this one place."""

from __future__ import annotations

from amosflow.errors import (
    AmosError,
    AuthenticationError,
    BusError,
    EngineError,
    PermissionDeniedError,
    ValidationFailedError,
)

OK = 0
RUN_FAILED = 1
INVALID = 2
ENGINE_UNAVAILABLE = 3
DENIED = 4

_BY_ERROR: tuple[tuple[type[AmosError], int], ...] = (
    (ValidationFailedError, INVALID),
    (EngineError, ENGINE_UNAVAILABLE),
    (BusError, ENGINE_UNAVAILABLE),
    (AuthenticationError, DENIED),
    (PermissionDeniedError, DENIED),
)


def for_error(err: AmosError) -> int:
    """The exit code for an error the CLI could not recover from."""
    for kind, code in _BY_ERROR:
        if isinstance(err, kind):
            return code
    return RUN_FAILED


def for_status(status: str) -> int:
    """The exit code for a run that ended with ``status``."""
    return OK if status == "completed" else RUN_FAILED
