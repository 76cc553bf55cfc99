"""Runs through /api/v1/runs: start, inspect, list, cancel, re-run and stream."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import Node
from tests.api.flows_util import doc, save, wait_for_end

pytestmark = pytest.mark.temporal


def test_start_run_completes_and_pins_the_version(node: Node) -> None:
    """A run started through the API completes and records the flow version it used."""
    commit = save(node.client, doc())["version"]["commit"]
    response = node.client.post("/api/v1/runs", json={"flow": "greet", "inputs": {"who": "Ada"}})
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["flow_version"] == commit
    assert response.headers["location"] == f"/api/v1/runs/{run['run_id']}"
    done = wait_for_end(node.client, run["run_id"])
    assert done["status"] == "completed"
    assert done["output"] == {"greeting": "Hello, Ada!"}
    assert done["steps"]["say"]["status"] == "completed"


def test_bad_inputs_are_refused_and_start_nothing(node: Node) -> None:
    """Inputs that break the flow's schema answer 422 and no run is recorded."""
    save(node.client, doc())
    response = node.client.post("/api/v1/runs", json={"flow": "greet", "inputs": {"who": 5}})
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"].startswith("/inputs")
    assert node.client.get("/api/v1/runs").json()["items"] == []


def test_missing_config_binding_is_refused_and_named(node: Node) -> None:
    """A flow that requires config keys nobody bound is refused, naming each key."""
    save(node.client, doc(requires={"config": ["erp.url", "erp.company"]}))
    response = node.client.post("/api/v1/runs", json={"flow": "greet", "inputs": {"who": "x"}})
    assert response.status_code == 422
    text = json.dumps(response.json())
    assert "erp.url" in text
    assert "erp.company" in text
    assert node.client.get("/api/v1/runs").json()["items"] == []


def test_unknown_flow_is_404(node: Node) -> None:
    """Starting a flow the catalog does not have answers 404 problem+json."""
    response = node.client.post("/api/v1/runs", json={"flow": "nope", "inputs": {}})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_same_run_id_starts_one_run(node: Node) -> None:
    """Posting the same run id twice returns the same run and starts it once."""
    save(node.client, doc())
    body = {"flow": "greet", "inputs": {"who": "x"}, "run_id": "default:fixed-run-1"}
    first = node.client.post("/api/v1/runs", json=body)
    second = node.client.post("/api/v1/runs", json=body)
    assert first.status_code == second.status_code == 201
    wait_for_end(node.client, "default:fixed-run-1")
    items = node.client.get("/api/v1/runs").json()["items"]
    assert [r["run_id"] for r in items] == ["default:fixed-run-1"]


def test_list_filters_and_pages(node: Node) -> None:
    """Listing filters by flow and status and walks every run once through the cursor."""
    save(node.client, doc())
    save(node.client, doc(name="other"))
    ids = [
        node.client.post("/api/v1/runs", json={"flow": "greet", "inputs": {"who": str(i)}}).json()[
            "run_id"
        ]
        for i in range(3)
    ]
    other = node.client.post("/api/v1/runs", json={"flow": "other", "inputs": {"who": "o"}}).json()[
        "run_id"
    ]
    for run_id in [*ids, other]:
        wait_for_end(node.client, run_id)
    seen: list[str] = []
    cursor = None
    while True:
        params = {
            "flow": "greet",
            "status": "completed",
            "limit": 2,
            **({"cursor": cursor} if cursor else {}),
        }
        page = node.client.get("/api/v1/runs", params=params).json()
        seen += [r["run_id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids)
    assert node.client.get("/api/v1/runs", params={"cursor": "garbage!"}).status_code == 422


def test_cancel_and_rerun(node: Node) -> None:
    """A waiting run can be cancelled; a re-run starts the same version with the same inputs."""
    slow = doc(name="slow")
    slow["steps"].insert(0, {"id": "pause", "type": "wait", "duration": "1h"})
    save(node.client, slow)
    run_id = node.client.post("/api/v1/runs", json={"flow": "slow", "inputs": {"who": "z"}}).json()[
        "run_id"
    ]
    cancelled = node.client.post(f"/api/v1/runs/{run_id}/cancel")
    assert cancelled.status_code == 202
    assert wait_for_end(node.client, run_id)["status"] == "cancelled"
    assert node.client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 409
    again = node.client.post(f"/api/v1/runs/{run_id}/rerun")
    assert again.status_code == 201
    assert again.json()["trigger"] == "rerun"
    assert again.json()["inputs"] == {"who": "z"}


def test_events_stream_until_the_run_ends(node: Node) -> None:
    """The SSE stream carries step events and ends with run.completed."""
    save(node.client, doc())
    run_id = node.client.post(
        "/api/v1/runs", json={"flow": "greet", "inputs": {"who": "s"}}
    ).json()["run_id"]
    kinds: list[str] = []
    with node.client.stream("GET", f"/api/v1/runs/{run_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event:"):
                kinds.append(line.removeprefix("event:").strip())
                if kinds[-1].startswith("run."):
                    break
    assert "step.completed" in kinds
    assert kinds[-1] == "run.completed"


def test_health_and_readiness(node: Node) -> None:
    """/healthz answers 200 and /readyz reports Temporal, the store, NATS and the codec ready."""
    assert node.client.get("/healthz").status_code == 200
    ready = node.client.get("/readyz")
    for _ in range(100):
        if ready.status_code == 200:
            break
        ready = node.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"codec": "ok", "temporal": "ok", "store": "ok", "nats": "ok"}
