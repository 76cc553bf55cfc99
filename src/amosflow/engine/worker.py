"""Composition root of a worker: the interpreter workflow plus every action activity."""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from amosflow import secrets
from amosflow.artifacts import ArtifactStore
from amosflow.engine.activities import build_activities
from amosflow.engine.workflow import FlowWorkflow

if TYPE_CHECKING:
    from temporalio.client import Client

    from amosflow.config import EngineSettings


def build_worker(client: Client, settings: EngineSettings) -> Worker:
    """A worker for the flow task queue.

    The workflow runs unsandboxed (decision 0004): the interpreter is pure by construction
    and replay tests guard it, and the sandbox would re-import the DSL models on every run.
    """
    store = ArtifactStore(settings.artifacts_dir)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[FlowWorkflow],
        activities=build_activities(
            store,
            inline_limit=settings.inline_limit,
            resolve_secret=secrets.resolver_for(settings.home),
        ),
        workflow_runner=UnsandboxedWorkflowRunner(),
        max_concurrent_activities=200,
        max_concurrent_local_activities=200,
    )
