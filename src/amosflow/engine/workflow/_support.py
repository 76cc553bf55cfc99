"""Pure helpers of the interpreter: parsing a pinned flow once, retries, failures, values.

Nothing here has a side effect; the interpreter imports it, and replay depends on it like
on the interpreter itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from temporalio.common import RetryPolicy as TemporalRetry
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
)
from temporalio.exceptions import (
    TimeoutError as TemporalTimeoutError,
)

from amosflow.dsl import Flow, RetryPolicy, Step, expr, iter_steps, parse_duration
from amosflow.engine.types import NON_RETRYABLE
from amosflow.engine.workflow._state import StepFailedError

if TYPE_CHECKING:
    from datetime import timedelta

_FLOW_CACHE: dict[str, tuple[Flow, dict[str, str], dict[str, Step]]] = {}


def load_flow(doc: dict[str, Any], flow_hash: str) -> tuple[Flow, dict[str, str], dict[str, Step]]:
    """Parse a pinned flow once per worker; the hash pins the content, so caching is pure."""
    cached = _FLOW_CACHE.get(flow_hash)
    if cached is None:
        flow = Flow.model_validate(doc)
        pointers: dict[str, str] = {}
        by_pointer: dict[str, Step] = {}
        for pointer, step in iter_steps(flow.steps):
            pointers[step.id] = pointer
            by_pointer[pointer] = step
        if len(_FLOW_CACHE) > 256:  # noqa: PLR2004 - a small bound; flows are re-parsed cheaply
            _FLOW_CACHE.clear()
        cached = _FLOW_CACHE[flow_hash] = (flow, pointers, by_pointer)
    return cached


def to_temporal_retry(policy: RetryPolicy) -> TemporalRetry:
    return TemporalRetry(
        initial_interval=parse_duration(policy.backoff),
        backoff_coefficient=2.0,
        maximum_interval=parse_duration(policy.max_backoff) if policy.max_backoff else None,
        maximum_attempts=policy.max_attempts,
        non_retryable_error_types=[NON_RETRYABLE],
    )


def failure_from(err: BaseException, step_id: str) -> StepFailedError:
    """Turn an activity or child failure into the DSL's error object."""
    cause: BaseException | None = err
    while isinstance(cause, ActivityError | ChildWorkflowError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        details = cause.details[0] if cause.details else {}
        type_ = details.get("type") if isinstance(details, dict) else None
        return StepFailedError(cause.message, str(type_ or cause.type or "ActionError"), step_id)
    if isinstance(cause, TemporalTimeoutError):
        kind = cause.type.name.lower() if cause.type is not None else "unknown"
        return StepFailedError(f"timed out ({kind})", "Timeout", step_id)
    if isinstance(cause, FailureError):
        return StepFailedError(cause.message, type(cause).__name__, step_id)
    return StepFailedError(str(cause), type(cause).__name__, step_id)


def json_equal(left: Any, right: Any) -> bool:
    """Equality as JSON sees it: 1 equals 1.0, but true does not equal 1."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    return bool(left == right)


def slot_parts(slot: expr.SecretSlot) -> list[Any]:
    return [{"secret": p.name} if isinstance(p, expr.SecretRef) else p for p in slot.parts]


def duration_or_fail(text: str, step_id: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError:
        fail(f"not a duration: {text!r}", step_id)


def fail(message: str, step_id: str) -> NoReturn:
    raise StepFailedError(message, "ValidationError", step_id)
