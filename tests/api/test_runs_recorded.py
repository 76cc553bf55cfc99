"""An ended run is read from the store: its status, output and step timeline, without Temporal."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.service import RPCError, RPCStatusCode

from amosflow.config import EngineSettings
from amosflow.engine.client import connect
from amosflow.engine.codec import payload_codec
from tests.api.conftest import Node
from tests.api.flows_util import doc, save

pytestmark = pytest.mark.temporal


async def _forget(settings: EngineSettings, run_id: str) -> None:
    """Delete the run's history from Temporal and wait until Temporal no longer knows it."""
    assert settings.temporal_address is not None
    client = await connect(settings.temporal_address, codec=payload_codec(settings.home))
    await client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=run_id)
        )
    )
    handle = client.get_workflow_handle(run_id)
    for _ in range(600):
        try:
            await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return
            raise
        await asyncio.sleep(0.05)  # deletion is asynchronous on the server; wait for it
    raise AssertionError(f"Temporal still knows {run_id}")


def test_an_ended_run_reads_from_the_store_after_temporal_forgot_it(
    node: Node, settings: EngineSettings
) -> None:
    """GET of an ended run answers its timeline even once Temporal has deleted its history."""
    save(node.client, doc())
    ended = node.client.post(
        "/api/v1/runs", params={"wait": "30s"}, json={"flow": "greet", "inputs": {"who": "Di"}}
    ).json()
    assert ended["status"] == "completed"
    asyncio.run(_forget(settings, ended["run_id"]))
    read = node.client.get(f"/api/v1/runs/{ended['run_id']}")
    assert read.status_code == 200, read.text
    run = read.json()
    assert run["status"] == "completed"
    assert run["output"] == {"greeting": "Hello, Di!"}
    assert run["steps"]["say"]["status"] == "completed"
    assert run["steps"]["say"]["runs"] == 1


def test_a_failed_runs_timeline_is_recorded_with_its_end(node: Node) -> None:
    """A failed run reads back with the steps it ran and the step that failed."""
    failing = {
        "dsl": "amos.flow/v1",
        "name": "broken",
        "steps": [
            {"id": "first", "type": "action", "action": "core.echo", "with": {"value": 1}},
            {"id": "stop", "type": "fail", "message": "stopped on purpose"},
        ],
    }
    save(node.client, failing)
    ended = node.client.post(
        "/api/v1/runs", params={"wait": "30s"}, json={"flow": "broken", "inputs": {}}
    ).json()
    assert ended["status"] == "failed"
    steps = node.client.get(f"/api/v1/runs/{ended['run_id']}").json()["steps"]
    assert steps["first"]["status"] == "completed"
    assert steps["stop"]["status"] == "failed"
