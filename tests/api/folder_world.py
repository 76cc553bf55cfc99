"""Two folders with one object of every kind each, for the folder-isolation tests.

``alpha`` and ``beta`` hold objects of the same names (``shared``), and ``beta`` holds one
more of each kind (``only-beta``). Everything of ``beta`` carries ``CANARY`` where a reader
could see it (descriptions, values, inputs, task titles, commit messages), so a test can
search every answer an ``alpha`` caller gets for it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.api.conftest import Node
from tests.api.flows_util import wait_for_end

CANARY = "beta-canary-4c1f9e07"
FOLDERS = ("alpha", "beta")
SHARED = "shared"
ONLY_BETA = "only-beta"
NOWHERE = "nowhere-zz"
NO_FOLDER = "nowhere-folder"
#: Kinds of catalog object, as their API paths name them.
CATALOG_KINDS = ("flows", "configs", "models", "mcp-servers", "triggers")


def flow(name: str, folder: str) -> dict[str, Any]:
    """A flow that echoes its input; beta's says so in its description."""
    return {
        "dsl": "amos.flow/v1",
        "name": name,
        "description": f"{folder} flow {CANARY if folder == 'beta' else ''}".strip(),
        "inputs": {"type": "object", "properties": {"who": {"type": "string"}}},
        "outputs": {"said": "${steps.say.output}"},
        "steps": [{"id": "say", "type": "action", "action": "core.echo", "with": {"value": "hi"}}],
    }


def asking(folder: str) -> dict[str, Any]:
    """A flow whose one human step waits for an approver: its run leaves a task open."""
    title = f"Approve {CANARY}" if folder == "beta" else "Approve it"
    return {
        "dsl": "amos.flow/v1",
        "name": "asks",
        "steps": [
            {
                "id": "ask",
                "type": "human",
                "task": "approval",
                "title": title,
                "assignees": ["role:approver"],
            }
        ],
    }


def document(kind: str, name: str, folder: str) -> dict[str, Any]:
    """A valid document of ``kind`` named ``name``, marked when it is beta's."""
    mark = CANARY if folder == "beta" else folder
    if kind == "flows":
        return flow(name, folder)
    if kind == "configs":
        return {"name": name, "layer": "base", "values": {"marker": mark}}
    if kind == "models":
        return {
            "name": name,
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "revision": mark,
        }
    if kind == "mcp-servers":
        url = "http://127.0.0.1:9/mcp"
        return {"name": name, "transport": "http", "url": url, "description": mark}
    if kind == "triggers":
        return {
            "name": name,
            "type": "schedule",
            "flow": SHARED,
            "cron": "0 3 * * *",
            "paused": True,
            "description": mark,
        }
    raise ValueError(kind)


@dataclass
class World:
    """The node, and the ids of beta's runs and tasks."""

    node: Node
    runs: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, str] = field(default_factory=dict)


def _ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def build(node: Node) -> World:
    """Fill both folders through the API as an administrator of every folder."""
    admin = node.client
    world = World(node)
    for folder in FOLDERS:
        _ok(admin.post("/api/v1/folders", json={"name": folder}))
    for folder in FOLDERS:
        names = [SHARED] + ([ONLY_BETA] if folder == "beta" else [])
        message = f"save {CANARY}" if folder == "beta" else "save"
        for kind in CATALOG_KINDS:
            for name in names:
                body = {"document": document(kind, name, folder), "folder": folder}
                _ok(admin.put(f"/api/v1/{kind}/{name}", json=body | {"message": message}))
        for name in names:
            value = {"value": f"{CANARY}-{name}" if folder == "beta" else "alpha", "folder": folder}
            _ok(admin.put(f"/api/v1/secrets/{name}", json=value))
        _ok(admin.put("/api/v1/flows/asks", json={"document": asking(folder), "folder": folder}))
        done = _ok(
            admin.post(
                "/api/v1/runs",
                json={
                    "flow": SHARED,
                    "folder": folder,
                    "inputs": {"who": CANARY if folder == "beta" else "a"},
                    # unique per world: the session's Temporal outlives each test's store
                    "run_id": f"{folder}:probe-{uuid.uuid4().hex[:8]}",
                },
            )
        )
        world.runs[folder] = done["run_id"]
        wait_for_end(admin, done["run_id"])
        waiting = _ok(admin.post("/api/v1/runs", json={"flow": "asks", "folder": folder}))
        world.tasks[folder] = _task_of(admin, waiting["run_id"])
    return world


def _task_of(client: httpx.Client, run_id: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = client.get("/api/v1/tasks", params={"scope": "all"}).json()["items"]
        found = [t["id"] for t in items if t["run_id"] == run_id]
        if found:
            return str(found[0])
        time.sleep(0.1)  # polling the inbox for the row the run's activity writes
    raise AssertionError(f"no task for {run_id}")


def snapshot(world: World) -> dict[str, Any]:
    """Everything of beta an administrator reads, to compare before and after a test."""
    admin = world.node.client
    seen: dict[str, Any] = {}
    for kind in (*CATALOG_KINDS, "secrets"):
        seen[kind] = admin.get(f"/api/v1/{kind}", params={"folder": "beta"}).json()
    seen["runs"] = sorted(
        (r["run_id"], r["status"])
        for r in admin.get("/api/v1/runs", params={"limit": 200}).json()["items"]
        if r["folder"] == "beta"
    )
    tasks = admin.get("/api/v1/tasks", params={"scope": "all", "folder": "beta"}).json()
    seen["tasks"] = sorted((t["id"], t["status"], t.get("claimed_by")) for t in tasks["items"])
    return seen
