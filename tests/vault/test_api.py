"""The secrets API and CLI never return a value; a canary set there reaches only its server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from amosflow.cli.secret import app as secret_cli
from amosflow.engine.client import connect
from tests.api.conftest import Node
from tests.api.conftest import node as node  # noqa: PLC0414 - the fixture, re-exported
from tests.api.flows_util import save, wait_for_end
from tests.support.history import history_text
from tests.vault.conftest import CANARY

pytestmark = pytest.mark.temporal


class Recorder:
    """Keeps every response body the test saw, to search them all for the canary."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.bodies: list[str] = []

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.client.request(method, path, **kwargs)
        self.bodies.append(response.text)
        return response


def test_the_api_never_returns_a_value(node: Node) -> None:
    """Create, update, list, read, rotate and delete answer metadata only, never the canary."""
    api = Recorder(node.client)
    created = api("PUT", "/api/v1/secrets/erp.token", json={"value": CANARY})
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    updated = api("PUT", "/api/v1/secrets/erp.token", json={"value": CANARY + "-2"})
    assert updated.status_code == 200
    assert updated.json()["version"] == 2
    assert (
        api("PUT", "/api/v1/secrets/x", json={"value": CANARY, "folder": "ops"}).status_code == 201
    )
    listed = api("GET", "/api/v1/secrets")
    assert [s["name"] for s in listed.json()] == ["erp.token", "x"]
    one = api("GET", "/api/v1/secrets/erp.token").json()
    assert set(one) == {
        "name", "folder", "version", "kek_id", "kek_version", "created_at", "updated_at"
    }  # fmt: skip
    rotated = api("POST", "/api/v1/secrets/rotate")
    assert rotated.json()["rewrapped"] == 3
    assert api("GET", "/api/v1/secrets/x").json()["kek_version"] == 2
    assert api("PUT", "/api/v1/secrets/bad name", json={"value": CANARY}).status_code == 422
    assert api("PUT", "/api/v1/secrets/y", json={"value": CANARY, "extra": 1}).status_code == 422
    assert api("DELETE", "/api/v1/secrets/x").status_code == 200
    assert api("GET", "/api/v1/secrets/x").status_code == 404
    assert api("GET", "/api/v1/openapi.json").status_code == 200
    assert all(CANARY not in body for body in api.bodies)


def test_the_cli_reads_values_from_stdin_and_never_prints_them(node: Node) -> None:
    """`amos secret set --value-stdin`, `ls`, `rotate` and `rm` work and never echo the value."""
    token = node.client.headers["Authorization"].removeprefix("Bearer ")
    runner = CliRunner(env={"AMOS_TOKEN": token})
    api = ["--api", node.url]
    done = runner.invoke(secret_cli, ["set", "cli.token", "--value-stdin", *api], input=CANARY)
    assert done.exit_code == 0, done.output
    assert "version=1" in done.output
    prompted = runner.invoke(secret_cli, ["set", "cli.token", *api], input=f"{CANARY}\n{CANARY}\n")
    assert prompted.exit_code == 0, prompted.output
    listed = runner.invoke(secret_cli, ["ls", *api])
    assert "cli.token" in listed.output
    assert "version=2" in listed.output
    assert "re-wrapped" in runner.invoke(secret_cli, ["rotate", *api]).output
    assert runner.invoke(secret_cli, ["rm", "cli.token", *api]).exit_code == 0
    missing = runner.invoke(secret_cli, ["rm", "cli.token", *api])
    assert missing.exit_code == 1
    for result in (done, prompted, listed, missing):
        assert CANARY not in result.output


def _flow(url: str) -> dict[str, Any]:
    return {
        "dsl": "amos.flow/v1",
        "name": "vault-canary",
        "requires": {"secrets": ["canary.token"]},
        "outputs": {"status": "${steps.call.output.status}", "body": "${steps.call.output}"},
        "steps": [
            {
                "id": "call",
                "type": "action",
                "action": "http.request",
                "with": {
                    "url": f"{url}/private",
                    "headers": {"Authorization": "Bearer ${secrets.canary.token}"},
                },
            }
        ],
    }


def _history(node: Node, run_id: str) -> str:
    async def fetch() -> str:
        client = await connect(str(node.config.engine.temporal_address))
        return history_text(await client.get_workflow_handle(run_id).fetch_history())

    return asyncio.run(fetch())


def test_a_vault_canary_reaches_its_server_and_nothing_else(
    node: Node, http_server, tmp_path: Path
) -> None:
    """A run needing a vault secret is refused until it is set, then the server alone sees it."""
    api = Recorder(node.client)
    save(node.client, _flow(http_server.url))
    refused = api("POST", "/api/v1/runs", json={"flow": "vault-canary", "inputs": {}})
    assert refused.status_code == 422
    assert "secret:canary.token" in refused.text
    assert api("PUT", "/api/v1/secrets/canary.token", json={"value": CANARY}).status_code == 201
    started = api("POST", "/api/v1/runs", json={"flow": "vault-canary", "inputs": {}})
    assert started.status_code in {200, 201}, started.text
    run_id = started.json()["run_id"]
    record = wait_for_end(node.client, run_id)
    assert record["status"] == "completed", record
    api("GET", f"/api/v1/runs/{run_id}")
    api("GET", "/api/v1/runs")
    assert http_server.requests[0].headers["authorization"] == f"Bearer {CANARY}"
    assert CANARY not in _history(node, run_id)
    assert CANARY not in str(record)
    assert all(CANARY not in body for body in api.bodies)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
