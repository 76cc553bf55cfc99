"""Flow documents and small helpers shared by the API tests."""

from __future__ import annotations

import time
from typing import Any

import httpx

TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


def doc(name: str = "greet", value: str = "Hello, ${inputs.who}!", **extra: Any) -> dict[str, Any]:
    """A small valid flow with one required input."""
    return {
        "dsl": "amos.flow/v1",
        "name": name,
        "inputs": {
            "type": "object",
            "properties": {"who": {"type": "string"}},
            "required": ["who"],
        },
        "outputs": {"greeting": "${steps.say.output}"},
        "steps": [{"id": "say", "type": "action", "action": "core.echo", "with": {"value": value}}],
        **extra,
    }


def save(client: httpx.Client, document: dict[str, Any]) -> dict[str, Any]:
    """Create or update a flow and return the API's answer."""
    response = client.put(
        f"/api/v1/flows/{document['name']}", json={"document": document, "message": "test"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for_end(client: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    """Read the run until the control plane has recorded its end."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}").json()
        if body.get("status") in TERMINAL or time.monotonic() > deadline:
            return body
        time.sleep(0.1)  # polling an HTTP resource; the condition is the run's recorded status
