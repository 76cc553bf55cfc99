"""A run waiting on approval survives a full restart of `amos up` and completes on approval."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from amosflow.engine.embedded import free_port
from tests.scenarios.test_node import _start, _stop, _until

pytestmark = [pytest.mark.slow]
APPROVER_PASSWORD = "approver-scenario-password-7d1e"
INVOICE = {"invoice": {"id": "INV-42", "vendor": "Acme", "amount": 9000}, "limit": 1000}


def _approver(url: str, admin: httpx.Client) -> httpx.Client:
    """Create user `ann` with the approver role and sign her in."""
    created = admin.post("/api/v1/users", json={"username": "ann", "password": APPROVER_PASSWORD})
    assert created.status_code == 201, created.text
    binding = {"subject_kind": "principal", "subject": created.json()["id"], "role": "approver"}
    assert admin.post("/api/v1/role-bindings", json=binding).status_code == 201
    login = httpx.post(
        f"{url}/api/v1/auth/login", json={"username": "ann", "password": APPROVER_PASSWORD}
    )
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    return httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})


def _open_task(client: httpx.Client, run_id: str) -> dict[str, Any] | None:
    items = client.get("/api/v1/tasks").json().get("items", [])
    found = [t for t in items if t["run_id"] == run_id]
    return found[0] if found else None


def test_a_waiting_approval_survives_a_restart(tmp_path: Path) -> None:
    """The task outlives the node: after a restart it is still open, and approving ends the run."""
    home, port = tmp_path / "home", free_port()
    node = _start(home, port)
    try:
        admin = node.admin()
        started = admin.post("/api/v1/runs", json={"flow": "invoice-approval", "inputs": INVOICE})
        assert started.status_code == 201, started.text
        run_id = started.json()["run_id"]
        with _approver(node.url, admin) as ann:
            task = _until(lambda: _open_task(ann, run_id))
        steps = admin.get(f"/api/v1/runs/{run_id}").json()["steps"]
        assert steps["approve"]["status"] == "waiting"
    finally:
        _stop(node)

    node = _start(home, port)
    try:
        admin = node.admin()
        login = httpx.post(
            f"{node.url}/api/v1/auth/login",
            json={"username": "ann", "password": APPROVER_PASSWORD},
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        with httpx.Client(base_url=node.url, timeout=30, headers=headers) as ann:
            assert _open_task(ann, run_id) == task
            decided = ann.post(
                f"/api/v1/tasks/{task['id']}/decide", json={"outcome": "approved", "comment": "ok"}
            )
            assert decided.status_code == 200, decided.text
        run = _until(
            lambda: (
                (body := admin.get(f"/api/v1/runs/{run_id}").json())["status"] == "completed"
                and body
            )
        )
        assert run["output"] == {"amount": 9000, "approval": "approved", "posted": False}
    finally:
        _stop(node)
