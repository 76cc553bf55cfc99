"""Starting, re-running, cancelling and listing runs: the one door every trigger goes through.

``record_status`` is the only writer of a run's status: the start moves a run to `running`,
the watcher records its end, both through it.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from amosflow import audit, vault
from amosflow.bus import cloud_event, subject_for
from amosflow.catalog import effective_config, missing_requirements
from amosflow.dsl import CallStep, iter_steps, parse_flow, validate_inputs
from amosflow.engine.client import RunRequest, new_run_id, start_run
from amosflow.errors import (
    ConflictError,
    Diagnostic,
    EngineError,
    NotFoundError,
    ValidationFailedError,
)
from amosflow.identity import allows, authorize, folder_scope
from amosflow.services import _access as access
from amosflow.services._progress import RunEvent
from amosflow.store import RunRecord, outbox
from amosflow.store import runs as run_store

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.orm import Session
    from temporalio.client import Client

    from amosflow.catalog import Catalog
    from amosflow.config import EngineSettings
    from amosflow.identity import Principal
    from amosflow.services._watcher import RunWatcher
    from amosflow.store import Page, Store

__all__ = [
    "EVENT_SOURCE",
    "TERMINAL",
    "ControlPlane",
    "RunRecord",
    "StartRequest",
    "cancel",
    "guard_run",
    "list_runs",
    "parse_wait",
    "record_status",
    "rerun",
    "run_resource",
    "start",
    "start_and_wait",
    "timeline",
    "wait_for_end",
]

EVENT_SOURCE = "urn:amosflow:control-plane"
TERMINAL = frozenset({"completed", "failed", "cancelled", "timed_out"})
#: How long a recorded run may stay unknown to Temporal before the watcher fails it: longer
#: than any start call takes, so a start still on its way is never overtaken.
START_GRACE = timedelta(minutes=2)
#: The longest a caller may hold a request open for a run's end; longer runs are followed.
MAX_WAIT = timedelta(seconds=120)
_WAIT_PATTERN = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m)?")
_WAIT_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}


@dataclass
class ControlPlane:
    """The parts a use case needs: settings, store, catalog, the Temporal client and watcher.

    ``watcher`` follows every run ``start`` starts; None where nothing records run ends (a
    test or a command that reads the end from Temporal itself).
    """

    settings: EngineSettings
    store: Store
    catalog: Catalog
    client: Client
    watcher: RunWatcher | None = None


@dataclass(frozen=True)
class StartRequest:
    """What a caller asks for when it starts a run."""

    flow: str
    inputs: dict[str, Any]
    version: str | None = None
    environment: str | None = None
    trigger: str = "manual"
    trigger_name: str | None = None
    trigger_ref: str | None = None
    run_id: str | None = None
    start_at: datetime | None = None
    actor: str = "api"
    #: The caller to authorize; None for the platform's own triggers (schedules, webhooks).
    principal: Principal | None = None
    #: The folder of the flow: required for the platform's own starts; for a caller, needed
    #: only when it sees the flow's name in more than one folder.
    folder: str | None = None


def run_resource(record: RunRecord) -> dict[str, Any]:
    """What ABAC conditions see of a run as ``resource``."""
    return {
        "kind": "run",
        "id": record.run_id,
        "flow": record.flow_name,
        "folder": record.folder,
        "status": record.status,
        "trigger": record.trigger,
        "started_by": record.started_by,
        "inputs": record.inputs,
    }


def timeline(cp: ControlPlane, run_id: str) -> dict[str, Any] | None:
    """The step timeline recorded with the run's end; None while it runs (or from before)."""
    with cp.store.session(read_only=True) as session:
        return run_store.get_timeline(session, run_id)


def guard_run(
    cp: ControlPlane, principal: Principal | None, permission: str, run_id: str
) -> RunRecord:
    """Load a run and authorize ``permission`` on it; a run the caller can't see is not found."""
    with cp.store.session(read_only=True) as session:
        record = run_store.get_run(session, run_id)
    if principal is not None:
        authorize(
            principal,
            permission,
            folder=record.folder,
            resource=run_resource(record),
            missing=f"run {run_id!r} not found",
        )
    return record


def _library(cp: ControlPlane, document: dict[str, Any], folder: str) -> dict[str, dict[str, Any]]:
    """Pin every flow a `call` can reach, by the reference written in the step.

    A child is looked for only in the run's own folder: a flow of another folder with the
    same name is another folder's flow, and the run fails before it starts, naming the
    reference and nothing of any other folder.
    """
    library: dict[str, dict[str, Any]] = {}
    pending = [document]
    while pending:
        for pointer, step in iter_steps(parse_flow(pending.pop()).steps):
            if isinstance(step, CallStep) and step.flow not in library:
                name, _, version = step.flow.partition("@")
                try:
                    child = cp.catalog.get("flows", name, version or None, folder=folder)
                except NotFoundError:
                    raise ValidationFailedError(
                        [Diagnostic(f"{pointer}/flow", f"no flow {step.flow!r} in this folder")]
                    ) from None
                library[step.flow] = child.document
                pending.append(child.document)
    return library


def _flow_folder(cp: ControlPlane, req: StartRequest) -> str:
    """The folder whose flow the request means: the caller's view, or the platform's word."""
    if req.principal is None:
        return req.folder or "default"
    return access.locate(
        req.principal,
        "flows",
        req.flow,
        req.folder,
        lambda: cp.catalog.folders_holding("flows", req.flow),
    )


def _check_run_id(req: StartRequest, folder: str) -> None:
    """A caller chooses run ids only in its flow's folder namespace: ``<folder>:<key>``.

    Ids made by the platform (random ones, and ``<folder>::<trigger>::…`` for schedules and
    webhooks) can never be spelled this way, so no caller can take a trigger's future run
    or learn whether another folder used an id.
    """
    if req.principal is None or req.run_id is None:
        return
    prefix = f"{folder}:"
    if not req.run_id.startswith(prefix) or req.run_id[len(prefix) : len(prefix) + 1] == ":":
        raise ValidationFailedError(
            [
                Diagnostic(
                    "/run_id",
                    f"a run id you choose starts with the flow's folder and one colon:"
                    f" {prefix}<your key>",
                )
            ]
        )


async def start(cp: ControlPlane, req: StartRequest) -> RunRecord:
    """Validate everything, record the run with its `run.started` event, start it, follow it.

    Nothing is recorded or started when the flow, the inputs or a requirement is wrong. The
    record comes first; a start Temporal did not take is reconciled (decision 0064): a start
    that never reached Temporal marks the run failed with the reason and raises EngineError
    (503); one whose fate is unknown (a timeout) is left to the watcher, which finds the
    workflow or fails the run once ``START_GRACE`` is over, as it does after a crash between
    the record and the start.
    Every reference of the run (child flows, config bundles, secrets) is resolved in the
    flow's folder only. The control plane's watcher follows the run (also a repeated start's),
    so no caller has to remember to.
    """
    record = await _start(cp, req)
    if cp.watcher is not None:
        cp.watcher.watch(record.run_id)
    return record


def parse_wait(text: str, pointer: str = "/wait") -> timedelta:
    """How long a caller waits for a run's end: ``30s``, ``1500ms``, ``2m`` or plain seconds.

    Anything else, and anything longer than ``MAX_WAIT``, is refused with a pointer to it.
    """
    match = _WAIT_PATTERN.fullmatch(text.strip())
    if match is None:
        raise ValidationFailedError(
            [Diagnostic(pointer, f"expected a duration such as 30s, 1500ms or 2m, not {text!r}")]
        )
    wait = timedelta(seconds=float(match[1]) * _WAIT_UNITS[match[2] or "s"])
    if wait > MAX_WAIT:
        limit = int(MAX_WAIT.total_seconds())
        raise ValidationFailedError([Diagnostic(pointer, f"at most {limit}s")])
    return wait


async def start_and_wait(cp: ControlPlane, req: StartRequest, wait: timedelta) -> RunRecord:
    """Start a run like ``start`` and return it ended if it ends within ``wait``.

    The end comes from the watcher's one completion long-poll per run, shared by every
    waiter; a run still going when the wait is over is returned as it stands, to be followed.
    A run that fails is returned failed: its end is an answer, not an error.
    """
    return await wait_for_end(cp, await start(cp, req), wait)


async def wait_for_end(cp: ControlPlane, record: RunRecord, wait: timedelta) -> RunRecord:
    """``record`` as it ended, if it ends within ``wait``; else ``record`` as it was."""
    if record.status in TERMINAL or cp.watcher is None or wait <= timedelta(0):
        return record
    ended = await cp.watcher.wait(record.run_id, wait)
    return record if ended is None else ended


async def _start(cp: ControlPlane, req: StartRequest) -> RunRecord:
    folder = _flow_folder(cp, req)
    if req.principal is not None:
        resource = {"kind": "flow", "flow": req.flow, "folder": folder, "inputs": req.inputs}
        authorize(
            req.principal,
            "runs.start",
            folder=folder,
            resource=resource,
            missing=access.missing("flows", req.flow),
        )
    _check_run_id(req, folder)
    entry = cp.catalog.get("flows", req.flow, req.version, folder=folder)
    flow = parse_flow(entry.document)
    inputs = validate_inputs(flow, req.inputs)
    config = effective_config(
        cp.catalog, environment=req.environment, trigger=req.trigger_name, folder=folder
    )
    bound = vault.bound_names(flow.requires.secrets, folder, store=cp.store)
    missing = missing_requirements(flow, config.values, bound)
    if missing:
        raise ValidationFailedError(
            [Diagnostic("/requires", f"no binding for {key}") for key in missing]
        )
    library = _library(cp, entry.document, folder)
    run_id = req.run_id or new_run_id(flow.name)
    now = datetime.now(UTC)
    record = RunRecord(
        run_id=run_id,
        flow_name=flow.name,
        flow_version=entry.version.commit,
        flow_hash=entry.version.content_hash,
        config_hash=config.sha256,
        status="pending",
        trigger=req.trigger,
        trigger_ref=req.trigger_ref,
        folder=folder,
        started_by=req.actor,
        inputs=inputs,
        created_at=now,
    )
    with cp.store.session() as session:
        existed = True
        try:
            stored = run_store.get_run(session, run_id)
        except NotFoundError:
            existed = False
            stored = run_store.record_run(session, record)
            event = cloud_event(
                "io.amosflow.run.started",
                source=EVENT_SOURCE,
                subject=run_id,
                data={
                    "run_id": run_id,
                    "flow": flow.name,
                    "version": entry.version.commit,
                    "trigger": req.trigger,
                },
            )
            outbox.enqueue(session, subject_for("io.amosflow.run.started", run_id), event)
            audit.append(
                session,
                actor=req.actor,
                action="runs.start",
                resource=f"runs/{run_id}",
                folder=folder,
                details={
                    "flow": flow.name,
                    "version": entry.version.commit,
                    "config_hash": config.sha256,
                    "trigger": req.trigger,
                    "trigger_ref": req.trigger_ref,
                },
            )
    if stored.folder != folder:
        # Only the platform's own ids can get here (a caller's carry its folder): never
        # hand out or restart another folder's run.
        raise ConflictError(f"run id {run_id!r} is taken")
    if req.principal is not None and existed:
        authorize(
            req.principal,
            "runs.read",
            folder=stored.folder,
            resource=run_resource(stored),
            missing=f"run {run_id!r} not found",
        )
    if stored.status in TERMINAL:
        return stored
    delay = req.start_at - now if req.start_at and req.start_at > now else None
    return await _start_workflow(cp, stored, entry.document, config.to_dict(), library, delay)


async def _start_workflow(  # noqa: PLR0917 - private, called once
    cp: ControlPlane,
    record: RunRecord,
    document: dict[str, Any],
    config: dict[str, Any],
    library: dict[str, dict[str, Any]],
    delay: timedelta | None,
) -> RunRecord:
    """Start the recorded run in Temporal and return it as recorded after the start."""
    request = RunRequest(
        flow=document,
        inputs=record.inputs,
        library=library,
        run_id=record.run_id,
        config=config,
        config_hash=record.config_hash,
    )
    try:
        await start_run(cp.client, request, task_queue=cp.settings.task_queue, start_delay=delay)
    except WorkflowAlreadyStartedError:
        # This run id already ran (or runs): the start was a repeat.
        with cp.store.session() as session:
            return run_store.get_run(session, record.run_id)
    except RPCError as err:

        async def again() -> None:
            # WorkflowAlreadyStarted: the first attempt did reach Temporal after all.
            with contextlib.suppress(WorkflowAlreadyStartedError):
                await start_run(
                    cp.client, request, task_queue=cp.settings.task_queue, start_delay=delay
                )
            with cp.store.session() as session:
                record_status(session, record.run_id, "running")

        _start_refused(cp, record.run_id, err, again)
    with cp.store.session() as session:
        return record_status(session, record.run_id, "running")


def _start_refused(
    cp: ControlPlane, run_id: str, err: RPCError, again: Callable[[], Awaitable[None]]
) -> None:
    """Leave no recorded run behind unstarted and unexplained; raise the 503 EngineError.

    UNAVAILABLE means the start never reached Temporal, so the run is failed now with the
    reason. Any other error (a broken connection, a deadline) may hide a workflow that did
    start, so the run stays pending and the watcher finishes the start with ``again`` (the
    run id is the workflow id, so a second start of a started run changes nothing) once
    Temporal answers. Without a watcher the run is failed now, as for UNAVAILABLE.
    """
    if err.status == RPCStatusCode.UNAVAILABLE or cp.watcher is None:
        with cp.store.session() as session:
            fail_unstarted(session, run_id, "Temporal was unreachable when the run was started")
        told = "the run is recorded as failed; start it again"
    else:
        cp.watcher.finish_start(run_id, again)
        told = "the run is recorded and the node will start it when the engine answers"
    raise EngineError(f"the workflow engine did not take run {run_id!r}: {told}") from None


def fail_unstarted(session: Session, run_id: str, reason: str) -> RunRecord:
    """Mark a recorded run that never started failed, with ``reason``, its end and event.

    The one way a run with no workflow ends: audited as `runs.end` and announced as
    `run.failed` (with the id the watcher would give it, so a repeat is dropped).
    """
    error = {"type": "RunNotStarted", "message": f"the run never started: {reason}"}
    ended = record_status(session, run_id, "failed", error=error, ended_at=datetime.now(UTC))
    if ended.error == error:
        data = {"run_id": run_id, "status": "failed", "error": error}
        type_, event = run_cloud_event(RunEvent("run.failed", run_id, data))
        outbox.enqueue(session, subject_for(type_, run_id), event)
    return ended


def run_cloud_event(event: RunEvent) -> tuple[str, dict[str, Any]]:
    """The CloudEvent of a step or run event, with an id stable across repeats."""
    type_ = f"io.amosflow.{event.kind}"
    if event.kind.startswith("run.") and event.kind != "run.completed":
        type_ = "io.amosflow.run.failed"
    # Stable ids let the bus drop the repeats of a run recorded twice.
    if event.kind.startswith("run."):
        event_id = f"{event.run_id}/run/{event.kind}"
    else:
        event_id = f"{event.run_id}/{event.data.get('step')}/{event.data.get('runs')}/{event.kind}"
    ce = cloud_event(type_, source=EVENT_SOURCE, subject=event.run_id, data=event.data, id=event_id)
    return type_, ce


def record_status(
    session: Session,
    run_id: str,
    status: str,
    *,
    output: Any = None,
    error: dict[str, Any] | None = None,
    ended_at: datetime | None = None,
    steps: dict[str, Any] | None = None,
) -> RunRecord:
    """Move a run forward to ``status`` in the caller's transaction; the one writer of it.

    Statuses only move forward (a late or repeated report changes nothing). The run's end is
    audited as `runs.end` in the same transaction, once, in the run's own folder, and its
    step timeline (``steps``) is kept with it.
    """
    before = run_store.get_run(session, run_id).status
    after = run_store.set_status(
        session, run_id, status, output=output, error=error, ended_at=ended_at
    )
    if after.status != before and after.status in TERMINAL:
        if steps is not None:
            run_store.record_timeline(session, run_id, steps)
        audit.append(
            session,
            actor="engine",
            action="runs.end",
            resource=f"runs/{run_id}",
            folder=after.folder,  # the run's own auditors read it, nobody else
            outcome="ok" if after.status == "completed" else "error",
            details={"status": after.status, "error": after.error},
        )
    return after


async def rerun(cp: ControlPlane, run_id: str, principal: Principal | None = None) -> RunRecord:
    """Start a new run of the same flow version with the same inputs."""
    old = guard_run(cp, principal, "runs.read", run_id)
    return await start(
        cp,
        StartRequest(
            flow=old.flow_name,
            version=old.flow_version or None,
            inputs=dict(old.inputs),
            trigger="rerun",
            trigger_ref=old.run_id,
            actor=principal.actor if principal is not None else "api",
            principal=principal,
            folder=old.folder,
        ),
    )


async def cancel(cp: ControlPlane, run_id: str, principal: Principal | None = None) -> RunRecord:
    """Ask a running run to cancel; a finished run cannot be cancelled. Returns the run."""
    record = guard_run(cp, principal, "runs.cancel", run_id)
    if record.status in TERMINAL:
        raise ConflictError(f"run {run_id} already ended {record.status}")
    with cp.store.session() as session:
        audit.append(
            session,
            actor=principal.actor if principal is not None else "api",
            action="runs.cancel",
            resource=f"runs/{run_id}",
            folder=record.folder,
            details={"status": record.status},
        )
    await cp.client.get_workflow_handle(run_id).cancel()
    with cp.store.session() as session:
        return run_store.get_run(session, run_id)


def list_runs(
    cp: ControlPlane,
    principal: Principal,
    *,
    flow: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[RunRecord]:
    """Runs ``principal`` may read, newest first, filtered and paged by cursor.

    The folders are filtered in the query; ABAC conditions are applied to the page, so a page
    can hold fewer than ``limit`` runs while ``next_cursor`` still leads on.
    """
    scope = folder_scope(principal, "runs.read")
    with cp.store.session(read_only=True) as session:
        page = run_store.list_runs(
            session,
            flow=flow,
            status=status,
            since=since,
            until=until,
            cursor=cursor,
            limit=limit,
            folders=None if scope.every else scope.folders,
        )
    shown = [r for r in page.items if allows(principal, "runs.read", r.folder, run_resource(r))]
    return replace(page, items=shown)
