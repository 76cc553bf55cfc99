"""Starting, re-running and cancelling runs: the one door every trigger goes through."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from temporalio.exceptions import WorkflowAlreadyStartedError

from amosflow import audit, secrets
from amosflow.bus.events import cloud_event, subject_for
from amosflow.catalog.config import effective_config, missing_requirements
from amosflow.dsl import parse_flow, validate_inputs
from amosflow.dsl.models import CallStep, iter_steps
from amosflow.engine.client import RunRequest, new_run_id, start_run
from amosflow.errors import ConflictError, Diagnostic, NotFoundError, ValidationFailedError
from amosflow.identity.policy import authorize
from amosflow.store import folders, outbox
from amosflow.store import runs as run_store

if TYPE_CHECKING:
    from temporalio.client import Client

    from amosflow.catalog import Catalog
    from amosflow.config import EngineSettings
    from amosflow.identity.principal import Principal
    from amosflow.store import Store

EVENT_SOURCE = "urn:amosflow:control-plane"
TERMINAL = frozenset({"completed", "failed", "cancelled", "timed_out"})


@dataclass
class ControlPlane:
    """The parts a use case needs: settings, store, catalog and the Temporal client."""

    settings: EngineSettings
    store: Store
    catalog: Catalog
    client: Client


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


def run_resource(record: run_store.RunRecord) -> dict[str, Any]:
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


def guard_run(
    cp: ControlPlane, principal: Principal | None, permission: str, run_id: str
) -> run_store.RunRecord:
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


def _library(cp: ControlPlane, document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Pin every flow a `call` can reach, by the reference written in the step."""
    library: dict[str, dict[str, Any]] = {}
    pending = [document]
    while pending:
        for _, step in iter_steps(parse_flow(pending.pop()).steps):
            if isinstance(step, CallStep) and step.flow not in library:
                name, _, version = step.flow.partition("@")
                child = cp.catalog.get("flows", name, version or None).document
                library[step.flow] = child
                pending.append(child)
    return library


async def start(cp: ControlPlane, req: StartRequest) -> run_store.RunRecord:
    """Validate everything, record the run with its `run.started` event, then start it.

    Nothing is recorded or started when the flow, the inputs or a requirement is wrong. The
    record comes first so a crash before Temporal accepts the start is repaired by `reconcile`.
    """
    entry = cp.catalog.get("flows", req.flow, req.version)
    with cp.store.session(read_only=True) as session:
        folder = folders.folder_of(session, "flows", req.flow)
    if req.principal is not None:
        resource = {"kind": "flow", "flow": req.flow, "folder": folder, "inputs": req.inputs}
        authorize(
            req.principal,
            "runs.start",
            folder=folder,
            resource=resource,
            missing=f"no flows named {req.flow!r} in the catalog",
        )
    flow = parse_flow(entry.document)
    inputs = validate_inputs(flow, req.inputs)
    config = effective_config(
        cp.catalog, environment=req.environment, trigger=req.trigger_name, folder=folder
    )
    bound = secrets.bound_names(flow.requires.secrets, store=cp.store)
    missing = missing_requirements(flow, config.values, bound)
    if missing:
        raise ValidationFailedError(
            [Diagnostic("/requires", f"no binding for {key}") for key in missing]
        )
    library = _library(cp, entry.document)
    run_id = req.run_id or new_run_id(flow.name)
    now = datetime.now(UTC)
    record = run_store.RunRecord(
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
        try:
            stored = run_store.get_run(session, run_id)
        except NotFoundError:
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
    if stored.status in TERMINAL:
        return stored
    delay = req.start_at - now if req.start_at and req.start_at > now else None
    await _start_workflow(cp, stored, entry.document, config.to_dict(), library, delay)
    with cp.store.session() as session:
        return run_store.get_run(session, run_id)


async def _start_workflow(  # noqa: PLR0917 - private, called once
    cp: ControlPlane,
    record: run_store.RunRecord,
    document: dict[str, Any],
    config: dict[str, Any],
    library: dict[str, dict[str, Any]],
    delay: timedelta | None,
) -> None:
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
        return  # this run id already ran (or runs): the start was a repeat
    with cp.store.session() as session:
        run_store.set_status(session, record.run_id, "running")


async def rerun(
    cp: ControlPlane, run_id: str, principal: Principal | None = None
) -> run_store.RunRecord:
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
        ),
    )


async def cancel(cp: ControlPlane, run_id: str, principal: Principal | None = None) -> None:
    """Ask a running run to cancel; a finished run cannot be cancelled."""
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
