"""The database restarting mid-transaction: PostgreSQL goes away while runs are writing.

A node on its own PostgreSQL server runs flows of two side effects with a wait between them;
while they run, the server is shut down fast (open transactions abort, every pooled
connection dies). During the outage the API must answer a clear 503 problem+json, never a
traceback; once the server is back every run must end with each side effect done once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings
from tests.api.conftest import Node, running_node
from tests.faults.checker import TERMINAL, check
from tests.faults.harness import Faults, wait_until
from tests.faults.injectors import restart_postgres
from tests.scenarios.test_runners import SideEffects
from tests.support.postgres import PostgresServer, PostgresUnavailableError

pytestmark = [pytest.mark.temporal]
SEED = 5
RUNS = 6
STEPS = ("first", "second")


@pytest.fixture
def faults() -> Faults:
    return Faults(seed=SEED)


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test alone: restarting the session's would hurt others."""
    try:
        server = PostgresServer().start()
    except PostgresUnavailableError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def target() -> Iterator[SideEffects]:
    service = SideEffects()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def pg_node(
    settings: EngineSettings,
    tmp_path: Path,
    nats_server: EmbeddedNats,
    own_postgres: PostgresServer,
) -> Iterator[Node]:
    url = own_postgres.create_database()
    with running_node(settings, tmp_path, nats_server, store_url=url) as node:
        yield node


def flow(url: str) -> dict[str, Any]:
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


def _is_clear_503(answer: httpx.Response) -> bool:
    return answer.status_code == 503 and answer.headers.get("content-type", "").startswith(
        "application/problem+json"
    )


def test_runs_survive_a_database_restart_and_the_outage_is_a_clear_503(
    pg_node: Node, own_postgres: PostgresServer, target: SideEffects, faults: Faults
) -> None:
    node = pg_node
    saved = node.client.put("/api/v1/flows/pg-battery", json={"document": flow(target.url)})
    assert saved.status_code == 200, saved.text
    run_ids = []
    for _ in range(RUNS):
        started = node.client.post("/api/v1/runs", json={"flow": "pg-battery", "inputs": {}})
        assert started.status_code == 201, started.text
        run_ids.append(started.json()["run_id"])
    wait_until(lambda: target.requests, what="the first side effect")
    outage: dict[str, httpx.Response] = {}

    def during_outage() -> None:
        outage["read"] = node.client.get("/api/v1/runs")
        outage["start"] = node.client.post(
            "/api/v1/runs", json={"flow": "pg-battery", "inputs": {}}
        )

    began = time.monotonic()
    restart_postgres(own_postgres, faults, while_down=during_outage)
    for what, answer in outage.items():
        assert _is_clear_503(answer), (what, answer.status_code, answer.text, str(faults))
        assert "Traceback" not in answer.text
        assert answer.json()["status"] == 503

    def ended() -> list[dict[str, Any]] | None:
        answers = [node.client.get(f"/api/v1/runs/{r}") for r in run_ids]
        if any(a.status_code != 200 for a in answers):
            return None
        runs = [a.json() for a in answers]
        return runs if all(r["status"] in TERMINAL for r in runs) else None

    runs = wait_until(ended, timeout=90, what=f"every run ended ({faults})")
    with target.lock:
        performed, requested = Counter(target.done), list(target.requests)
    findings = check(runs, performed, requested, STEPS, node.config.store_url)
    assert findings.ok, f"{findings} [{faults}]"
    assert [r["status"] for r in runs] == ["completed"] * RUNS, (runs, str(faults))
    assert time.monotonic() - began < 90
