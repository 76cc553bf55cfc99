"""Synchronous runs: `POST /runs?wait=…` and webhooks with `respond: result`."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.api.conftest import Node
from tests.api.flows_util import doc, save, wait_for_end
from tests.api.test_triggers_api import hook, hook_key, signed

pytestmark = pytest.mark.temporal


def _slow(name: str = "slow") -> dict[str, object]:
    slow = doc(name=name)
    slow["steps"].insert(0, {"id": "pause", "type": "wait", "duration": "2s"})
    return slow


def test_wait_answers_with_the_ended_run_and_its_output(node: Node) -> None:
    """A run that ends within the wait is answered 201 with its status and output."""
    save(node.client, doc())
    response = node.client.post(
        "/api/v1/runs", params={"wait": "20s"}, json={"flow": "greet", "inputs": {"who": "Ada"}}
    )
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["status"] == "completed"
    assert run["output"] == {"greeting": "Hello, Ada!"}
    assert response.headers["location"] == f"/api/v1/runs/{run['run_id']}"


def test_wait_that_runs_out_answers_202_and_the_run_goes_on(node: Node) -> None:
    """A run still going when the wait is over is answered 202 with a Location to follow."""
    save(node.client, _slow())
    response = node.client.post(
        "/api/v1/runs", params={"wait": "50ms"}, json={"flow": "slow", "inputs": {"who": "Bo"}}
    )
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["status"] in {"pending", "running"}
    assert response.headers["location"] == f"/api/v1/runs/{run['run_id']}"
    done = wait_for_end(node.client, run["run_id"])
    assert done["status"] == "completed"
    assert done["output"] == {"greeting": "Hello, Bo!"}


def test_waiters_of_one_run_share_its_end(node: Node) -> None:
    """A second start of the same run id, waiting too, gets the same ended run."""
    save(node.client, doc())
    run_id = f"default:waited-{uuid.uuid4().hex}"
    body = {"flow": "greet", "inputs": {"who": "Cy"}, "run_id": run_id}
    first = node.client.post("/api/v1/runs", params={"wait": "20s"}, json=body)
    second = node.client.post("/api/v1/runs", params={"wait": "20s"}, json=body)
    assert first.status_code == second.status_code == 201
    assert first.json()["status"] == second.json()["status"] == "completed"
    assert first.json()["ended_at"] == second.json()["ended_at"]


def test_a_failed_run_under_wait_is_its_failed_record(node: Node) -> None:
    """A run that fails within the wait answers 201 with the failed run, not a server error."""
    failing = {
        "dsl": "amos.flow/v1",
        "name": "broken",
        "steps": [{"id": "stop", "type": "fail", "message": "stopped on purpose"}],
    }
    save(node.client, failing)
    response = node.client.post(
        "/api/v1/runs", params={"wait": "20s"}, json={"flow": "broken", "inputs": {}}
    )
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["status"] == "failed"
    assert run["error"]["step"] == "stop"
    assert "stopped on purpose" in run["error"]["message"]


@pytest.mark.parametrize("wait", ["soon", "-1s", "10h", "121s", "3m"])
def test_a_bad_or_too_long_wait_is_422_and_starts_nothing(node: Node, wait: str) -> None:
    """A wait that is no duration, or longer than 120 s, is refused before anything starts."""
    save(node.client, doc())
    response = node.client.post(
        "/api/v1/runs", params={"wait": wait}, json={"flow": "greet", "inputs": {"who": "x"}}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert node.client.get("/api/v1/runs").json()["items"] == []


def test_wait_needs_the_right_to_start_runs(node: Node) -> None:
    """A caller who may only read runs cannot start one by waiting for it."""
    save(node.client, doc())
    reader = node.as_caller(node.token_for("watcher", "auditor"))
    response = reader.post(
        "/api/v1/runs", params={"wait": "5s"}, json={"flow": "greet", "inputs": {"who": "x"}}
    )
    assert response.status_code in {403, 404}, response.text
    assert node.client.get("/api/v1/runs").json()["items"] == []


def test_webhook_with_respond_result_answers_with_the_output(node: Node) -> None:
    """A hook with `respond: result` answers 200 with the ended run and its output."""
    hook_key(node)
    save(node.client, doc())
    response = node.client.put(
        "/api/v1/triggers/orders", json={"document": hook(respond="result", wait_s=20)}
    )
    assert response.status_code == 200, response.text
    body = json.dumps({"who": "hook"}).encode()
    headers = signed(body, delivery=f"result-{uuid.uuid4().hex}")
    answer = node.client.post("/api/v1/hooks/orders", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "completed"
    assert answer.json()["output"] == {"greeting": "Hello, hook!"}


def test_webhook_with_respond_result_that_runs_out_answers_202(node: Node) -> None:
    """A `respond: result` hook whose run outlasts `wait_s` answers 202; the run goes on."""
    hook_key(node)
    save(node.client, _slow("greet"))
    response = node.client.put(
        "/api/v1/triggers/orders", json={"document": hook(respond="result", wait_s=0.05)}
    )
    assert response.status_code == 200, response.text
    body = json.dumps({"who": "late"}).encode()
    headers = signed(body, delivery=f"late-{uuid.uuid4().hex}")
    answer = node.client.post("/api/v1/hooks/orders", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    assert wait_for_end(node.client, answer.json()["run_id"])["status"] == "completed"


def test_webhook_respond_defaults_to_accepted(node: Node) -> None:
    """A hook that says nothing about `respond` answers 202 as soon as the run is started."""
    hook_key(node)
    save(node.client, _slow("greet"))
    assert node.client.put("/api/v1/triggers/orders", json={"document": hook()}).status_code == 200
    body = json.dumps({"who": "now"}).encode()
    headers = signed(body, delivery=f"now-{uuid.uuid4().hex}")
    answer = node.client.post("/api/v1/hooks/orders", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] in {"pending", "running"}


def test_a_hook_refuses_a_wait_longer_than_120s(node: Node) -> None:
    """A webhook trigger whose `wait_s` is over 120 s is refused with a pointer to it."""
    response = node.client.put(
        "/api/v1/triggers/orders", json={"document": hook(respond="result", wait_s=600)}
    )
    assert response.status_code == 422, response.text
    assert "wait_s" in json.dumps(response.json())
