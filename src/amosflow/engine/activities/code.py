"""`code.python`: a script run in a fresh sandbox (see amosflow.sandbox).

The wrapper in base.py heartbeats while the sandbox runs, so a worker that dies is noticed
by its heartbeat timeout rather than by the step's whole timeout.
"""

from __future__ import annotations

from typing import Any

from amosflow.dsl import parse_duration
from amosflow.dsl.actions import OUTPUT_CAP_BYTES
from amosflow.engine.activities._base import ActionContext, implementation
from amosflow.errors import ActionError
from amosflow.sandbox import (
    Limits,
    Outcome,
    SandboxError,
    SandboxUnavailableError,
    run_python,
)

# Outcome kind -> (ActionError type, retryable). The script and its inputs are the same on
# a retry, so none of its own failures is retried; only a sandbox that broke is.
_FAILURES: dict[str, tuple[str, bool]] = {
    "error": ("ScriptError", False),
    "timeout": ("Timeout", False),
    "memory": ("MemoryLimit", False),
    "cpu": ("CpuLimit", False),
    "bad_result": ("BadResult", False),
}


def _limits(params: Any) -> Limits:
    return Limits(
        timeout_s=parse_duration(params.timeout).total_seconds(),
        memory_mb=params.memory_mb,
        cpu_seconds=params.cpu_seconds,
        output_bytes=OUTPUT_CAP_BYTES,
    )


def _failure(ctx: ActionContext, outcome: Outcome) -> ActionError:
    type_, retryable = _FAILURES[outcome.kind]
    message = outcome.message or outcome.kind
    if outcome.kind == "error":
        message = f"the script failed: {message}"
    return ActionError(ctx.redact(message), type_=type_, retryable=retryable)


@implementation("code.python")
async def python(ctx: ActionContext, params: Any) -> dict[str, Any]:
    """Run ``with.script`` on ``with.inputs``; return result, stdout, stderr and duration_ms."""
    try:
        outcome = await run_python(params.script, params.inputs, _limits(params))
    except SandboxUnavailableError as err:
        raise ActionError(str(err), type_="SandboxUnavailable", retryable=False) from None
    except SandboxError as err:
        raise ActionError(str(err), type_="SandboxError", retryable=True) from None
    if outcome.kind != "ok":
        raise _failure(ctx, outcome)
    return {
        "result": outcome.result,
        "stdout": outcome.stdout,
        "stderr": outcome.stderr,
        "duration_ms": outcome.duration_ms,
    }
