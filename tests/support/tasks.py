"""A control plane for human-task tests: a flow worker, the task activities, a store, a client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from amosflow.catalog import Catalog
from amosflow.config import EngineSettings, NotifySettings, SmtpSettings, TaskSettings
from amosflow.engine.client import RunRequest, connect, progress, result_of, start_run
from amosflow.engine.codec import payload_codec
from amosflow.engine.worker import build_worker
from amosflow.humantasks import TaskRecord, list_inbox, task_activities
from amosflow.identity import Binding, Principal
from amosflow.services import ControlPlane
from amosflow.store import Store, open_store
from amosflow.store import runs as run_store

WAIT_S = 30.0


def person(username: str, role: str = "approver", groups: tuple[str, ...] = ()) -> Principal:
    """A user holding ``role`` in every folder."""
    return Principal(
        id=f"id-{username}",
        kind="user",
        username=username,
        bindings=(Binding(role),),
        groups=groups,
    )


@dataclass
class Plane:
    """What a test drives: the control plane, its store and the Temporal client."""

    cp: ControlPlane
    store: Store
    client: Client
    task_queue: str

    async def start(
        self, document: dict[str, Any], inputs: dict[str, Any] | None = None, *, run_id: str
    ) -> str:
        """Record the run as started by ``user:starter`` and start it."""
        with self.store.session() as session:
            run_store.record_run(
                session,
                run_store.RunRecord(
                    run_id=run_id,
                    flow_name=document["name"],
                    flow_hash="h",
                    config_hash="c",
                    status="running",
                    started_by="user:starter",
                    inputs=inputs or {},
                ),
            )
        request = RunRequest(flow=document, inputs=inputs or {}, library={}, run_id=run_id)
        await start_run(self.client, request, task_queue=self.task_queue)
        return run_id

    async def task_of(self, run_id: str, step: str, *, status: str = "open") -> TaskRecord:
        """Poll the inbox until the run's task for ``step`` has ``status``."""
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while True:
            with self.store.session(read_only=True) as session:
                page = list_inbox(session, status=status, limit=200)
            found = [t for t in page.items if t.run_id == run_id and t.step_id == step]
            if found:
                return found[0]
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no {status} task for {run_id}/{step}")
            await asyncio.sleep(0.05)  # polling the store for the activity's write

    async def progress(self, run_id: str) -> dict[str, Any]:
        """The run's progress query."""
        return await progress(self.client.get_workflow_handle(run_id))

    async def result(self, run_id: str) -> dict[str, Any]:
        """Wait for the run's end and return its result object."""
        return await result_of(self.client.get_workflow_handle(run_id))


@contextlib.asynccontextmanager
async def control_plane(
    settings: EngineSettings, tmp_path: Path, notify: NotifySettings | None = None
) -> AsyncIterator[Plane]:
    """A flow worker and a control worker with the task activities, against a fresh store."""
    assert settings.temporal_address is not None
    client = await connect(
        settings.temporal_address, codec=payload_codec(settings.home, create=True)
    )
    store = open_store(f"sqlite:///{tmp_path / 'amos.db'}")
    cp = ControlPlane(
        settings=settings, store=store, catalog=Catalog(tmp_path / "c"), client=client
    )
    control = Worker(
        client,
        task_queue=f"{settings.task_queue}.control",
        activities=task_activities(
            store, tasks=TaskSettings(), notify=notify or NotifySettings(), smtp=SmtpSettings()
        ),
    )
    try:
        async with build_worker(client, settings), control:
            yield Plane(cp=cp, store=store, client=client, task_queue=settings.task_queue)
    finally:
        store.dispose()
