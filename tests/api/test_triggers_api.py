"""Triggers through the API: signed webhooks, cron schedules and deferred starts."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from amosflow.triggers import sign
from tests.api.conftest import Node
from tests.api.flows_util import doc, save, wait_for_end

pytestmark = pytest.mark.temporal
KEY = "hook-key-5d1e"


def hook(name: str = "orders", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "webhook", "flow": "greet", "secret": "hooks.orders", **extra}


def signed(
    body: bytes, *, key: str = KEY, at: int | None = None, delivery: str = "d-1"
) -> dict[str, str]:
    stamp = str(at if at is not None else int(time.time()))
    return {
        "content-type": "application/json",
        "X-Amos-Timestamp": stamp,
        "X-Amos-Signature": sign(key.encode(), stamp, delivery, body),
        "X-Amos-Delivery": delivery,
    }


def hook_key(node: Node, folder: str = "default") -> None:
    """Put the hooks' signing key into ``folder``'s vault."""
    response = node.client.put(
        "/api/v1/secrets/hooks.orders", json={"value": KEY, "folder": folder}
    )
    assert response.status_code in {200, 201}, response.text


@pytest.fixture
def hooked(node: Node) -> Node:
    hook_key(node)
    save(node.client, doc())
    response = node.client.put("/api/v1/triggers/orders", json={"document": hook(burst=10)})
    assert response.status_code == 200, response.text
    return node


def runs(node: Node) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = node.client.get("/api/v1/runs").json()["items"]
    return items


def test_signed_delivery_starts_the_flow(hooked: Node) -> None:
    """A correctly signed delivery starts the hook's flow with the body as inputs."""
    body = json.dumps({"who": "hook"}).encode()
    response = hooked.client.post("/api/v1/hooks/orders", content=body, headers=signed(body))
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["trigger"] == "webhook"
    assert wait_for_end(hooked.client, run["run_id"])["output"] == {"greeting": "Hello, hook!"}


def test_same_delivery_five_times_starts_one_run(hooked: Node) -> None:
    """Repeating one delivery id returns the same run and starts nothing more."""
    body = json.dumps({"who": "again"}).encode()
    ids = {
        hooked.client.post(
            "/api/v1/hooks/orders", content=body, headers=signed(body, delivery="same")
        ).json()["run_id"]
        for _ in range(5)
    }
    assert len(ids) == 1
    wait_for_end(hooked.client, ids.pop())
    assert len(runs(hooked)) == 1


def test_bad_signature_is_401_and_starts_nothing(hooked: Node) -> None:
    """A delivery signed with the wrong key is refused and no run exists."""
    body = json.dumps({"who": "x"}).encode()
    response = hooked.client.post(
        "/api/v1/hooks/orders", content=body, headers=signed(body, key="wrong")
    )
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert runs(hooked) == []


def test_replayed_timestamp_is_401_and_starts_nothing(hooked: Node) -> None:
    """A correctly signed delivery whose timestamp is outside the window is refused."""
    body = json.dumps({"who": "x"}).encode()
    old = int(time.time()) - 3600
    response = hooked.client.post(
        "/api/v1/hooks/orders", content=body, headers=signed(body, at=old)
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "missing or invalid signature"
    assert runs(hooked) == []


def test_wrong_content_type_is_415(hooked: Node) -> None:
    """A body in another content type than the hook expects is refused."""
    body = b"who=x"
    headers = {**signed(body), "content-type": "application/x-www-form-urlencoded"}
    assert (
        hooked.client.post("/api/v1/hooks/orders", content=body, headers=headers).status_code == 415
    )
    assert runs(hooked) == []


def test_oversized_body_is_413(node: Node) -> None:
    """A signed body larger than the hook allows is refused and starts nothing."""
    hook_key(node)
    save(node.client, doc())
    node.client.put("/api/v1/triggers/small", json={"document": hook("small", max_body_bytes=64)})
    body = json.dumps({"who": "x" * 200}).encode()
    assert (
        node.client.post("/api/v1/hooks/small", content=body, headers=signed(body)).status_code
        == 413
    )
    assert runs(node) == []


def test_burst_beyond_the_rate_gets_429_with_retry_after(node: Node) -> None:
    """Deliveries beyond the burst are refused with 429 and Retry-After; accepted ones all run."""
    hook_key(node)
    save(node.client, doc())
    node.client.put(
        "/api/v1/triggers/tight", json={"document": hook("tight", burst=2, rate_per_s=0.01)}
    )
    answers = []
    for i in range(4):
        body = json.dumps({"who": str(i)}).encode()
        answers.append(
            node.client.post(
                "/api/v1/hooks/tight", content=body, headers=signed(body, delivery=f"b{i}")
            )
        )
    assert [a.status_code for a in answers] == [202, 202, 429, 429]
    assert int(answers[2].headers["retry-after"]) >= 1
    accepted = [a.json()["run_id"] for a in answers if a.status_code == 202]
    assert all(wait_for_end(node.client, r)["status"] == "completed" for r in accepted)


def test_body_breaking_the_input_schema_is_422(hooked: Node) -> None:
    """A signed body that fails the flow's input schema is refused and starts nothing."""
    body = json.dumps({"who": 42}).encode()
    response = hooked.client.post("/api/v1/hooks/orders", content=body, headers=signed(body))
    assert response.status_code == 422
    assert runs(hooked) == []


def test_cron_schedule_fires_and_pauses(node: Node, request: pytest.FixtureRequest) -> None:
    """A seconds-level schedule starts runs through the control plane until it is paused."""
    save(node.client, doc())
    name = "tick-" + str(abs(hash(request.node.nodeid)) % 100000)
    trigger = {
        "name": name,
        "type": "schedule",
        "flow": "greet",
        "cron": "@every 1s",
        "inputs": {"who": "cron"},
    }
    assert (
        node.client.put(f"/api/v1/triggers/{name}", json={"document": trigger}).status_code == 200
    )
    try:
        deadline = time.monotonic() + 30
        scheduled: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not scheduled:
            scheduled = [r for r in runs(node) if r["trigger"] == "schedule"]
            time.sleep(0.2)  # polling the run list for the schedule's first fire
        assert scheduled, "the schedule never fired"
        assert wait_for_end(node.client, scheduled[0]["run_id"])["output"] == {
            "greeting": "Hello, cron!"
        }
        assert node.client.post(f"/api/v1/triggers/{name}/pause").status_code == 204
    finally:
        node.client.request("DELETE", f"/api/v1/triggers/{name}")


def test_deferred_start_waits_for_its_time(node: Node) -> None:
    """A run with start_at does not begin before that time, then completes."""
    save(node.client, doc())
    start_at = datetime.now(UTC) + timedelta(seconds=2)
    body = {"flow": "greet", "inputs": {"who": "later"}, "start_at": start_at.isoformat()}
    run = node.client.post("/api/v1/runs", json=body).json()
    assert run["trigger"] == "deferred"
    done = wait_for_end(node.client, run["run_id"])
    assert done["status"] == "completed"
    began = datetime.fromisoformat(done["steps"]["say"]["started_at"])
    assert began >= start_at - timedelta(milliseconds=50)


def test_backfill_pause_and_resume(node: Node, request: pytest.FixtureRequest) -> None:
    """Backfill fires a paused hourly schedule once per missed hour; resume is accepted."""
    save(node.client, doc())
    name = "hourly-" + str(abs(hash(request.node.nodeid)) % 100000)
    trigger = {
        "name": name,
        "type": "schedule",
        "flow": "greet",
        "cron": "0 * * * *",
        "timezone": "Europe/Berlin",
        "overlap": "allow_all",
        "paused": True,
        "inputs": {"who": "past"},
    }
    assert (
        node.client.put(f"/api/v1/triggers/{name}", json={"document": trigger}).status_code == 200
    )
    try:
        end = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
        body = {"start_at": (end - timedelta(hours=3)).isoformat(), "end_at": end.isoformat()}
        assert node.client.post(f"/api/v1/triggers/{name}/backfill", json=body).status_code == 202
        deadline = time.monotonic() + 60
        fired: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(fired) < 3:
            fired = [
                r for r in runs(node) if r["trigger"] == "schedule" and r["status"] == "completed"
            ]
            time.sleep(0.2)  # polling the run list for the backfilled fires
        assert len(fired) == 3
        assert all(r["output"] == {"greeting": "Hello, past!"} for r in fired)
        assert node.client.post(f"/api/v1/triggers/{name}/resume").status_code == 204
        bad = {"start_at": end.isoformat(), "end_at": (end - timedelta(hours=1)).isoformat()}
        assert node.client.post(f"/api/v1/triggers/{name}/backfill", json=bad).status_code == 422
    finally:
        node.client.request("DELETE", f"/api/v1/triggers/{name}")
