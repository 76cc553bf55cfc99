"""The dispatch activity: lease a step to an eligible runner and complete asynchronously.

It runs on the control-plane worker, next to the store. The job id is the step's
idempotency key, so a retried activity finds its job again: a finished job answers at once
(the side effect is not repeated), an unfinished one takes the new attempt's task token.

Fail fast and closed means *no runner is enrolled* for the step's capability and zone: then
the step fails at once, naming what was missing. A runner that is enrolled but not sending
heartbeats right now is restarting (or the API was away longer than the heartbeat limit),
so the job stays queued and the activity waits for an eligible runner, up to the dispatch
wait (``AMOS_RUNNER_DISPATCH_WAIT_SECONDS``); a runner that checks in meanwhile leases the
job as usual. Only then does the step fail, saying how long it waited and for whom.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
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

    from sqlalchemy.orm import Session

    from amosflow.config import RunnerSettings
    from amosflow.store import Store

DISPATCH_ACTIVITY = "amos.runner.dispatch"
#: How often a step waiting for a restarting runner looks at the store again.
WAIT_POLL_S = 0.5


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
        if state in {"queued", "waiting"}:
            wake.job_queued(store)  # committed: the waiting runners look now, not at a poll
        deadline = time.monotonic() + settings.dispatch_wait_seconds
        while state == "waiting":
            # An enrolled runner is away: the job is queued for it; wait until one checks in
            # (or takes the job), and fail closed only when the dispatch wait is over.
            await asyncio.sleep(WAIT_POLL_S)
            state, result, error = _look(
                store, settings, request, job.job_id, give_up=time.monotonic() >= deadline
            )
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
        waiting = row.state == "queued" and not _has_eligible(session, settings, request, now)
        if waiting and not registry.enrolled_runners(
            session, capability=request.capability, zone=request.zone, now=now
        ):
            message = registry.no_eligible_runner_message(request.capability, request.zone)
            row.state = "failed"
            row.error = {"message": message, "type": "NoEligibleRunner", "retryable": False}
            waiting = False
        if row.state == "queued":
            wake.announce(session)
        return ("waiting" if waiting else row.state), row.result, row.error


def _has_eligible(
    session: Session, settings: RunnerSettings, request: DispatchCall, now: datetime
) -> bool:
    return bool(
        registry.eligible_runners(
            session,
            capability=request.capability,
            zone=request.zone,
            now=now,
            heartbeat_ttl=settings.heartbeat_ttl,
        )
    )


def _look(
    store: Store, settings: RunnerSettings, request: DispatchCall, job_id: str, *, give_up: bool
) -> tuple[str, Any, Any]:
    """The waiting job's state now: still ``waiting``, or as stored once a runner is back.

    With ``give_up`` a job still queued with no eligible runner fails (in the same locked
    transaction, so a runner leasing it at this moment wins or loses cleanly).
    """
    now = datetime.now(UTC)
    with store.session() as session:
        row = jobs.find_job(session, job_id, lock=give_up)
        if row is None:  # pragma: no cover - jobs are never deleted
            raise AssertionError(f"runner job {job_id!r} vanished while it waited")
        if row.state != "queued" or _has_eligible(session, settings, request, now):
            return row.state, row.result, row.error
        if not give_up:
            return "waiting", None, None
        waited = settings.dispatch_wait_seconds
        row.state = "failed"
        row.error = {
            "message": (
                f"no runner took this step within {waited:g} s: a runner is enrolled for "
                f"capability {request.capability!r} in "
                f"{_where(request.zone)} but none sent heartbeats (restarting or cut off); "
                "start one or raise AMOS_RUNNER_DISPATCH_WAIT_SECONDS"
            ),
            "type": "RunnerUnavailable",
            "retryable": False,
        }
        row.updated_at = now
        session.flush()
        return row.state, row.result, row.error


def _where(zone: str | None) -> str:
    return f"zone {zone!r}" if zone is not None else "any zone"


def job_failure(error: Any) -> Failure:
    """The Failure recorded for a job (by a runner, or for want of one)."""
    if not isinstance(error, dict):
        return Failure("the runner reported a failure", "RunnerError", retryable=False)
    return Failure(
        str(error.get("message", "the runner reported a failure")),
        str(error.get("type", "RunnerError")),
        retryable=bool(error.get("retryable", False)),
    )
