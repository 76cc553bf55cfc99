"""An ended run is read from the store: its status, output and step timeline, without Temporal."""

from __future__ import annotations

from pathlib import Path

import pytest

from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings
from amosflow.engine.embedded import EmbeddedTemporal
from tests.api.conftest import Node, running_node
from tests.api.flows_util import doc, save

pytestmark = pytest.mark.temporal


def test_an_ended_run_reads_from_the_store_when_temporal_never_knew_it(
    node: Node,
    settings: EngineSettings,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    nats_server: EmbeddedNats,
) -> None:
    """GET of an ended run answers its timeline from a node whose Temporal never saw the run.

    A second node shares the first one's store, catalog and keys but talks to a Temporal
    server of its own, so anything it answers about the run can only come from the store.
    (Deleting the history on the shared server instead is asynchronous and took longer than
    any sane bound on a loaded machine.)
    """
    save(node.client, doc())
    ended = node.client.post(
        "/api/v1/runs", params={"wait": "30s"}, json={"flow": "greet", "inputs": {"who": "Di"}}
    ).json()
    assert ended["status"] == "completed"
    elsewhere = EmbeddedTemporal(tmp_path_factory.mktemp("temporal-elsewhere"))
    elsewhere.start()
    try:
        blank = settings.model_copy(update={"temporal_address": elsewhere.address})
        with running_node(blank, tmp_path, nats_server, store_url=node.config.store_url) as other:
            read = other.client.get(f"/api/v1/runs/{ended['run_id']}")
    finally:
        elsewhere.stop()
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
