"""The secrets API and CLI never return a value; a canary set there reaches only its server."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from amosflow.bus import ALL_SUBJECTS
from amosflow.bus.embedded import EmbeddedNats
from amosflow.cli.secret import app as secret_cli
from amosflow.engine.client import connect
from amosflow.engine.codec import ENCODING, payload_codec
from amosflow.engine.embedded import EmbeddedTemporal
from amosflow.telemetry import redaction
from tests.api.conftest import Node
from tests.api.conftest import node as node  # noqa: PLC0414 - the fixture, re-exported
from tests.api.flows_util import save, wait_for_end
from tests.api.test_tasks_api import caller, task_of
from tests.bus.streams import stored_events
from tests.engine.test_codec import decoded_text, history_payloads, key_ids
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


def _history(node: Node, run_id: str) -> tuple[str, str]:
    """The run's history as stored (no codec), and every payload of it decrypted."""

    async def fetch() -> tuple[str, str]:
        address = str(node.config.engine.temporal_address)
        raw = await (await connect(address)).get_workflow_handle(run_id).fetch_history()
        codec = payload_codec(node.config.engine.home)
        decoded = await codec.decode(history_payloads(raw))
        assert any(p.metadata.get("encoding") == ENCODING for p in history_payloads(raw))
        return history_text(raw), "\n".join(p.data.decode(errors="replace") for p in decoded)

    return asyncio.run(fetch())


def _stream(nats_url: str, run_id: str) -> list[bytes]:
    """Every event the bus stream holds, once the run's completion has been relayed.

    The relay backs off after a publish that timed out (up to a minute, see bus._relay), which a
    loaded two-core CI machine can cause; the wait outlasts one backoff and ends as soon as the
    event is there.
    """
    deadline = time.monotonic() + 90
    while True:
        events = asyncio.run(stored_events(nats_url, ALL_SUBJECTS))
        if any(run_id.encode() in e and b"run.completed" in e for e in events):
            return events
        assert time.monotonic() < deadline, "the run's completion never reached the stream"
        threading.Event().wait(0.2)


@pytest.fixture
def node_log(tmp_path: Path) -> Iterator[Path]:
    """Every log record of this process (API, worker, SDKs) into a file, filtered as a node's."""
    path = tmp_path / "logs" / "node.log"
    path.parent.mkdir()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    redaction.install()
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def _files(*roots: Path) -> Iterator[Path]:
    for root in roots:
        yield from (path for path in root.rglob("*") if path.is_file())


def test_a_vault_canary_reaches_its_server_and_nothing_else(  # noqa: PLR0917 - fixtures
    node_log: Path,
    node: Node,
    http_server,
    tmp_path: Path,
    temporal_server: EmbeddedTemporal,
    nats_server: EmbeddedNats,
) -> None:
    """Issue 8's acceptance: the canary reaches the loopback server and no other place.

    Searched: the run's Temporal history (raw, and every payload decrypted), the NATS stream,
    every log file (this node's log, Temporal's and NATS's), the database files (the node's
    SQLite store, Temporal's and JetStream's files) and every API response of the test.
    """
    canary = f"{CANARY}-{uuid.uuid4().hex[:8]}"  # unique: the servers are the session's
    api = Recorder(node.client)
    save(node.client, _flow(http_server.url))
    refused = api("POST", "/api/v1/runs", json={"flow": "vault-canary", "inputs": {}})
    assert refused.status_code == 422
    assert "secret:canary.token" in refused.text
    assert api("PUT", "/api/v1/secrets/canary.token", json={"value": canary}).status_code == 201
    started = api("POST", "/api/v1/runs", json={"flow": "vault-canary", "inputs": {}})
    assert started.status_code in {200, 201}, started.text
    run_id = started.json()["run_id"]
    record = wait_for_end(node.client, run_id)
    assert record["status"] == "completed", record
    api("GET", f"/api/v1/runs/{run_id}")
    api("GET", "/api/v1/runs")
    api("GET", "/api/v1/secrets/canary.token")
    api("GET", "/api/v1/audit", params={"action": "secrets.read"})
    assert http_server.requests[0].headers["authorization"] == f"Bearer {canary}"
    raw, decoded = _history(node, run_id)
    assert canary not in raw
    assert canary not in decoded
    assert run_id in raw  # the search did read this run's history
    assert node.config.nats_url is not None
    events = _stream(node.config.nats_url, run_id)
    assert all(canary.encode() not in event for event in events)
    assert canary not in str(record)
    assert all(canary not in body for body in api.bodies)
    assert node_log.stat().st_size > 0
    searched = list(_files(tmp_path, temporal_server.home, nats_server.home))
    assert {p.name for p in searched} >= {"amos.db", "node.log", "temporal.db", "kek.json"}
    for path in searched:
        assert canary.encode() not in path.read_bytes(), path


def test_rotation_under_a_running_flow_loses_nothing(node: Node, http_server) -> None:
    """A run waits on a person between two uses of a secret; meanwhile the key-encryption key
    rotates and the secret gets a new version. The run resumes (its history still decodes) and
    its second call carries the new value (retiring old versions: tests/vault/test_vault.py)."""
    call = _flow(http_server.url)["steps"][0]
    document = {
        "dsl": "amos.flow/v1",
        "name": "vault-rotation",
        "requires": {"secrets": ["canary.token"]},
        "outputs": {"second": "${steps.after.output.status}"},
        "steps": [
            {**call, "id": "before"},
            {
                "id": "hold",
                "type": "human",
                "task": "approval",
                "title": "Go on",
                "assignees": ["role:approver"],
            },
            {**call, "id": "after"},
        ],
    }
    first, second = f"{CANARY}-old-{uuid.uuid4().hex[:6]}", f"{CANARY}-new-{uuid.uuid4().hex[:6]}"
    assert node.client.put("/api/v1/secrets/canary.token", json={"value": first}).status_code in {
        200,
        201,
    }
    save(node.client, document)
    started = node.client.post("/api/v1/runs", json={"flow": "vault-rotation", "inputs": {}})
    assert started.status_code == 201, started.text
    run_id = started.json()["run_id"]
    task = task_of(node, run_id)  # the run is parked, after its first call
    rotated = node.client.post("/api/v1/secrets/rotate")
    assert rotated.status_code == 200, rotated.text
    updated = node.client.put("/api/v1/secrets/canary.token", json={"value": second})
    assert updated.status_code == 200, updated.text
    decided = caller(node, "rotation-approver").post(
        f"/api/v1/tasks/{task['id']}/decide", json={"outcome": "approved", "comment": "go"}
    )
    assert decided.status_code == 200, decided.text
    record = wait_for_end(node.client, run_id)
    assert record["status"] == "completed", record
    auth = [r.headers["authorization"] for r in http_server.requests[-2:]]
    assert auth == [f"Bearer {first}", f"Bearer {second}"]
    raw, decoded = _history(node, run_id)  # written under the old KEK and the new one
    assert run_id in raw
    assert first not in decoded
    assert second not in decoded


def test_the_codec_key_rotates_from_the_cli_and_old_runs_still_decode(node: Node) -> None:
    """`amos secret rotate --codec`: later payloads name the new key, earlier ones still open;
    the rotation is audited and needs the right to write secrets everywhere."""
    document = {
        "dsl": "amos.flow/v1",
        "name": "codec-rotation",
        "inputs": {"type": "object", "properties": {"word": {"type": "string"}}},
        "outputs": {"said": "${steps.say.output}"},
        "steps": [
            {
                "id": "say",
                "type": "action",
                "action": "core.echo",
                "with": {"value": "${inputs.word}"},
            }
        ],
    }
    save(node.client, document)

    def run(word: str) -> str:
        started = node.client.post(
            "/api/v1/runs", json={"flow": "codec-rotation", "inputs": {"word": word}}
        )
        assert started.status_code == 201, started.text
        run_id: str = started.json()["run_id"]
        assert wait_for_end(node.client, run_id)["status"] == "completed"
        return run_id

    before = run("before-rotation")
    refused = caller(node, "codec-analyst", "analyst").post("/api/v1/secrets/codec/rotate")
    assert refused.status_code == 403, refused.text
    token = node.client.headers["Authorization"].removeprefix("Bearer ")
    rotated = CliRunner(env={"AMOS_TOKEN": token}).invoke(
        secret_cli, ["rotate", "--codec", "--api", node.url]
    )
    assert rotated.exit_code == 0, rotated.output
    assert "is current" in rotated.output
    after = run("after-rotation")

    async def key_ids_and_text(run_id: str) -> tuple[set[str], str]:
        client = await connect(str(node.config.engine.temporal_address))
        history = await client.get_workflow_handle(run_id).fetch_history()
        fresh = payload_codec(node.config.engine.home)  # a new process's view of the ring
        return key_ids(history), await decoded_text(fresh, history)

    old_keys, old_text = asyncio.run(key_ids_and_text(before))
    new_keys, new_text = asyncio.run(key_ids_and_text(after))
    assert old_keys
    assert new_keys
    assert old_keys.isdisjoint(new_keys)
    assert "before-rotation" in old_text
    assert "after-rotation" in new_text
    audit = node.client.get("/api/v1/audit", params={"action": "secrets.rotate_codec"}).json()
    assert audit["items"], audit
