"""The dispatch activity: lease a step to an eligible runner and complete asynchronously.

It runs on the control-plane worker, next to the store. The job id is the step's
idempotency key, so a retried activity finds its job again: a finished job answers at once
(the side effect is not repeated), an unfinished one takes the new attempt's task token. No
eligible runner fails the step at once and closed, naming what was missing.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from temporalio import activity

from amosflow.engine.activities import Failure, current_run_config
from amosflow.engine.types import ActionResult, DispatchCall
from amosflow.errors import NotFoundError
from amosflow.runner.dispatch import _jobs as jobs
from amosflow.runner.dispatch import _registry as registry
from amosflow.runner.dispatch import _wake as wake
from amosflow.store import runs as run_store

if TYPE_CHECKING:
    from collections.abc import Callable

    from amosflow.config import RunnerSettings
    from amosflow.store import Store

DISPATCH_ACTIVITY = "amos.runner.dispatch"


def _folder(store: Store, run_id: str) -> str:
    """The folder of the recorded run a step belongs to; a run the node never recorded has none.

    The job's folder decides whose secrets the runner may be given, so an unknown run fails
    the step instead of borrowing a folder.
    """
    with store.session(read_only=True) as session:
        try:
            return run_store.get_run(session, run_store.root_run_id(run_id)).folder
        except NotFoundError:
            raise Failure(
                f"run {run_id!r} is not recorded by this node, so it has no folder to run in",
                "RunUnknown",
                retryable=False,
            ).to_application_error() from None


def dispatch_activity(store: Store, settings: RunnerSettings) -> Callable[..., Any]:
    """The activity the interpreter calls for a step with a `runner` selector."""

    @activity.defn(name=DISPATCH_ACTIVITY)
    async def dispatch(request: DispatchCall) -> ActionResult:
        info = activity.info()
        call = request.call
        # The run's config (a Temporal read) and its folder (a store read, off the event
        # loop the runner endpoint shares) are fetched at once.
        config, folder = await asyncio.gather(
            current_run_config(), asyncio.to_thread(_folder, store, call.run_id)
        )
        job = jobs.NewJob(
            job_id=call.idempotency_key,
            run_id=call.run_id,
            step=call.step_id,
            action=call.action,
            capability=request.capability,
            zone=request.zone,
            folder=folder,
            payload={"call": dataclasses.asdict(call), "config": config},
            task_token=info.task_token,
        )
        # On the loop, not in a thread: concurrent SQLite writers of one process would meet
        # at the write lock and back off in sleeps (a burst of dispatches halved throughput).
        state, result, error = _enqueue(store, settings, job, request)
        if state == "queued":
            wake.job_queued(store)  # committed: the waiting runners look now, not at a poll
        if state == "completed":
            return ActionResult(output=result, attempt=info.attempt)
        if state == "failed":
            raise job_failure(error).to_application_error()
        activity.raise_complete_async()
        raise AssertionError("unreachable: raise_complete_async raises")  # pragma: no cover

    return dispatch


def _enqueue(
    store: Store, settings: RunnerSettings, job: jobs.NewJob, request: DispatchCall
) -> tuple[str, Any, Any]:
    """Queue ``job`` (or find it) in one transaction; fail it at once if no runner can take it.

    Returns the job's state, result and error as committed. A queued job is announced to
    other processes in the same transaction.
    """
    now = datetime.now(UTC)
    with store.session() as session:
        row = jobs.enqueue(session, job, now=now)
        if row.state == "queued" and not registry.eligible_runners(
            session,
            capability=request.capability,
            zone=request.zone,
            now=now,
            heartbeat_ttl=settings.heartbeat_ttl,
        ):
            message = registry.no_eligible_runner_message(request.capability, request.zone)
            row.state = "failed"
            row.error = {"message": message, "type": "NoEligibleRunner", "retryable": False}
        if row.state == "queued":
            wake.announce(session)
        return row.state, row.result, row.error


def job_failure(error: Any) -> Failure:
    """The Failure recorded for a job (by a runner, or for want of one)."""
    if not isinstance(error, dict):
        return Failure("the runner reported a failure", "RunnerError", retryable=False)
    return Failure(
        str(error.get("message", "the runner reported a failure")),
        str(error.get("type", "RunnerError")),
        retryable=bool(error.get("retryable", False)),
    )
