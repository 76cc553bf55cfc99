"""Start runs, follow their progress and read their results: the engine's public door."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, CancelledError, TerminatedError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError
from temporalio.service import RPCError

from amosflow.dsl import content_hash
from amosflow.engine.codec import data_converter, payload_codec
from amosflow.engine.embedded import EmbeddedTemporal, running_address
from amosflow.engine.types import PROGRESS_QUERY, TIMELINE_KEY, WORKFLOW_NAME, RunInput
from amosflow.errors import EngineError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from temporalio.converter import PayloadCodec

    from amosflow.config import EngineSettings

CONNECT_TIMEOUT_S = 30.0


async def connect(
    address: str, namespace: str = "default", *, codec: PayloadCodec | None = None
) -> Client:
    """Connect to Temporal, waiting for a server that is still starting.

    Every process of a node passes the node's ``codec`` (``payload_codec(home)``), so all of
    them read and write the same encrypted payloads; without one the client speaks plaintext
    and is only for reading history raw.
    """
    converter = data_converter(codec)
    deadline = asyncio.get_running_loop().time() + CONNECT_TIMEOUT_S
    while True:
        try:
            client = await Client.connect(address, namespace=namespace, data_converter=converter)
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=namespace)
            )
        except (RuntimeError, RPCError) as err:
            if asyncio.get_running_loop().time() > deadline:
                raise EngineError(f"cannot reach Temporal at {address}: {err}") from err
            await asyncio.sleep(0.1)
        else:
            return client


@contextlib.asynccontextmanager
async def open_engine(settings: EngineSettings) -> AsyncIterator[Client]:
    """Yield a client: to the configured cluster, a node already running here, or a new one.

    Its payloads are encrypted with the codec of ``settings.home`` (created on first use).
    """
    codec = payload_codec(settings.home, create=True)
    if settings.temporal_address:
        yield await connect(settings.temporal_address, settings.temporal_namespace, codec=codec)
        return
    address = running_address(settings.home)
    if address:
        yield await connect(address, settings.temporal_namespace, codec=codec)
        return
    server = EmbeddedTemporal(settings.home)
    # Started from this (the main) thread on purpose: the server dies with the thread that
    # started it, and nothing else runs on the loop yet, so blocking for the start is fine.
    server.start()
    try:
        yield await connect(server.address, settings.temporal_namespace, codec=codec)
    finally:
        server.stop()


@dataclass(frozen=True)
class RunRequest:
    """A validated flow document with its inputs, ready to start."""

    flow: dict[str, Any]
    inputs: dict[str, Any]
    library: dict[str, dict[str, Any]]
    run_id: str = ""
    config: dict[str, Any] | None = None
    config_hash: str = ""


def new_run_id(flow_name: str) -> str:
    """A fresh, readable run id."""
    return f"{flow_name}-{uuid.uuid4().hex[:12]}"


async def start_run(
    client: Client,
    request: RunRequest,
    *,
    task_queue: str,
    eager: bool = True,
    start_delay: timedelta | None = None,
) -> WorkflowHandle[Any, Any]:
    """Start one run of the interpreter workflow; the run id is its workflow id.

    ``eager`` asks the server to hand the run's first workflow task back in the start's answer
    when a worker of ``client`` polls ``task_queue`` (the single node's API process runs one):
    the run begins without a round trip through the task queue. With no such worker, or a
    delayed start, the start is an ordinary one.
    """
    run_id = request.run_id or new_run_id(str(request.flow["name"]))
    inp = RunInput(
        flow=request.flow,
        flow_hash=content_hash(request.flow),
        inputs=request.inputs,
        config=request.config or {},
        config_hash=request.config_hash,
        library=request.library,
        run_id=run_id,
    )
    return await client.start_workflow(
        WORKFLOW_NAME,
        inp,
        id=run_id,
        task_queue=task_queue,
        request_eager_start=eager and start_delay is None,
        execution_timeout=timedelta(days=365),
        # A run id names one run forever: a replayed start joins the running one and a
        # finished id is never reused, so a webhook delivery or a retry starts one run.
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_delay=start_delay,
    )


async def progress(
    handle: WorkflowHandle[Any, Any], *, rpc_timeout: timedelta | None = None
) -> dict[str, Any]:
    """The run's per-step progress, from the workflow's query."""
    result: dict[str, Any] = await handle.query(PROGRESS_QUERY, rpc_timeout=rpc_timeout)
    return result


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: the DSL result object and the step timeline the workflow reported.

    ``steps`` is None when the workflow could not report it: a run cancelled, terminated or
    timed out from outside, or one that ended before runs reported their timeline.
    """

    result: dict[str, Any]
    steps: dict[str, Any] | None


async def outcome_of(handle: WorkflowHandle[Any, Any]) -> RunOutcome:
    """Wait for the run (one result long-poll, no query) and return how it ended."""
    run_id = handle.id
    try:
        result: dict[str, Any] = await handle.result()
    except WorkflowFailureError as err:
        failed = {
            "run_id": run_id,
            "status": _status_of(err),
            "output": None,
            "error": _error_of(err),
        }
        return RunOutcome(failed, _failure_timeline(err))
    steps = result.pop(TIMELINE_KEY, None)
    return RunOutcome(result, steps if isinstance(steps, dict) else None)


async def result_of(handle: WorkflowHandle[Any, Any]) -> dict[str, Any]:
    """Wait for the run and return the DSL result object, whatever the outcome."""
    return (await outcome_of(handle)).result


def _failure_timeline(err: WorkflowFailureError) -> dict[str, Any] | None:
    cause = err.cause
    if isinstance(cause, ApplicationError) and len(cause.details) > 1:
        extra = cause.details[1]
        if isinstance(extra, dict) and isinstance(extra.get(TIMELINE_KEY), dict):
            steps: dict[str, Any] = extra[TIMELINE_KEY]
            return steps
    return None


def _status_of(err: WorkflowFailureError) -> str:
    match err.cause:
        case CancelledError():
            return "cancelled"
        case TemporalTimeoutError():
            return "timed_out"
        case TerminatedError():
            return "cancelled"
        case _:
            return "failed"


def _error_of(err: WorkflowFailureError) -> dict[str, Any]:
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.details and isinstance(cause.details[0], dict):
        details = cause.details[0]
        return {
            "message": str(details.get("message", cause.message)),
            "type": str(details.get("type", cause.type)),
            "step": details.get("step"),
        }
    return {"message": str(cause or err), "type": type(cause or err).__name__, "step": None}


async def describe_status(handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionStatus | None:
    """The Temporal status of a run, or None when it is unknown."""
    desc = await handle.describe()
    return desc.status
