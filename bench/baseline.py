"""The hand-written baseline: one workflow that runs N echo activities in a row, nothing else.

It calls the very activities the interpreter calls (``core.echo`` as a local activity, or its
bench-only twin ``bench.echo`` as a regular one) with the same payload types, timeouts and
retry policy, so the difference to the interpreter is the interpreter's own work. The
settings comparison uses ``bench.noop`` instead: the bare cost of an activity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from amosflow.engine.types import NON_RETRYABLE, ActionCall, ActionResult

BASELINE_WORKFLOW = "bench.baseline"
NOOP_ACTIVITY = "bench.noop"
# The interpreter's defaults for a step without timeout or retry (see interpreter.py).
TIMEOUT = timedelta(minutes=5)
HEARTBEAT = timedelta(seconds=30)
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_attempts=3,
    non_retryable_error_types=[NON_RETRYABLE],
)


@dataclass
class BaselineInput:
    """How many activities to run, which one, and whether as local activities."""

    steps: int
    action: str
    local: bool


@workflow.defn(name=BASELINE_WORKFLOW)
class BaselineWorkflow:
    """Runs ``steps`` echo activities one after the other and returns their outputs."""

    @workflow.run
    async def run(self, inp: BaselineInput) -> dict[str, Any]:
        run_id = workflow.info().workflow_id
        outputs: list[Any] = []
        for index in range(inp.steps):
            step_id = f"s{index}"
            call = ActionCall(
                action=inp.action,
                with_={"value": index},
                run_id=run_id,
                step_id=step_id,
                iteration="0",
                idempotency_key=f"{run_id}/{step_id}/0",
                pointer=f"/steps/{index}",
            )
            if inp.local:
                result = await workflow.execute_local_activity(
                    inp.action,
                    call,
                    result_type=ActionResult,
                    start_to_close_timeout=TIMEOUT,
                    retry_policy=RETRY,
                )
            else:
                result = await workflow.execute_activity(
                    inp.action,
                    call,
                    result_type=ActionResult,
                    start_to_close_timeout=TIMEOUT,
                    heartbeat_timeout=HEARTBEAT,
                    retry_policy=RETRY,
                )
            outputs.append(result.output)
        return {"run_id": run_id, "status": "completed", "output": outputs, "error": None}


@activity.defn(name=NOOP_ACTIVITY)
async def noop(call: ActionCall) -> ActionResult:
    """Return the echo value with nothing around it: no validation, no heartbeat, no check."""
    return ActionResult(output=call.with_.get("value"))
