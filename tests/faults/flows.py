"""What several fault tests build alike: a node with short runner leases, a runner step."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings, RunnerSettings
from amosflow.engine.embedded import free_port
from tests.api.conftest import Node, running_node


@contextlib.contextmanager
def leased_node(
    settings: EngineSettings, tmp_path: Path, nats: EmbeddedNats, *, lease_seconds: float
) -> Iterator[Node]:
    """A node whose runner leases run out in ``lease_seconds``, and whose runner steps wait
    a minute for a runner that is restarting (a fault test's runner comes back within it)."""
    runners = RunnerSettings(
        port=free_port(), lease_seconds=lease_seconds, dispatch_wait_seconds=60.0
    )
    with running_node(settings, tmp_path, nats, runners=runners) as node:
        yield node


def runner_post(url: str) -> dict[str, Any]:
    """A step (without its id) that POSTs to ``url`` on a runner of zone ``core``."""
    return {
        "type": "action",
        "action": "http.request",
        "runner": {"zone": "core"},
        "timeout": "60s",
        "with": {"method": "POST", "url": url, "json": {}},
    }


def two_effects(url: str) -> dict[str, Any]:
    """Two side effects on the worker with a wait between them, so runs write across time."""
    call = {"type": "action", "action": "http.request", "timeout": "60s"}
    call["with"] = {"method": "POST", "url": url, "json": {}}
    return {
        "dsl": "amos.flow/v1",
        "name": "pg-battery",
        "steps": [
            {"id": "first", **call},
            {"id": "pause", "type": "wait", "duration": "1s"},
            {"id": "second", **call},
        ],
    }


def save_and_start(client: httpx.Client, document: dict[str, Any], runs: int) -> list[str]:
    """Save ``document`` and start it ``runs`` times; the run ids, in order."""
    saved = client.put(f"/api/v1/flows/{document['name']}", json={"document": document})
    assert saved.status_code == 200, saved.text
    run_ids = []
    for _ in range(runs):
        started = client.post("/api/v1/runs", json={"flow": document["name"], "inputs": {}})
        assert started.status_code == 201, started.text
        run_ids.append(str(started.json()["run_id"]))
    return run_ids
