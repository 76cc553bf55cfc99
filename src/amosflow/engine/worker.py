"""Composition root of a worker: the interpreter workflow plus every action activity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    UnsandboxedWorkflowRunner,
    Worker,
)

from amosflow import audit
from amosflow.engine.activities import ArtifactStore, build_activities
from amosflow.engine.workflow import FlowWorkflow
from amosflow.telemetry import redaction
from amosflow.vault import VaultResolver

if TYPE_CHECKING:
    from temporalio.client import Client

    from amosflow.config import EngineSettings


class _StepSecrets(ActivityInboundInterceptor):
    """Runs each activity in a redaction scope (decision 0031).

    The secrets the activity resolves are masked in every log record of the process while it
    runs, and forgotten when it ends.
    """

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:  # noqa: A002
        with redaction.step():
            return await super().execute_activity(input)


class RedactionInterceptor(Interceptor):
    """Puts every activity of the worker in its own redaction scope."""

    def intercept_activity(
        self,
        next: ActivityInboundInterceptor,  # noqa: A002 - temporalio's parameter name
    ) -> ActivityInboundInterceptor:
        """Wrap the activity's inbound calls."""
        return _StepSecrets(next)


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
            resolve_secret=VaultResolver(settings.home, audit.record_secret_read),
        ),
        workflow_runner=UnsandboxedWorkflowRunner(),
        interceptors=[RedactionInterceptor()],
        max_concurrent_activities=200,
        max_concurrent_local_activities=200,
    )
