"""The database restarting mid-transaction: PostgreSQL goes away while runs are writing.

A node on its own PostgreSQL server runs flows of two side effects with a wait between them;
while they run and a client keeps starting more, the server is shut down fast (open
transactions abort, every pooled connection dies). During the outage the API must answer a clear 503 problem+json, never a
traceback; once the server is back every run must end with each side effect done once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from amosflow.api._outage import classify
from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings
from amosflow.engine.embedded import free_port
from tests.api.conftest import Node, running_node
from tests.faults.checker import TERMINAL, check
from tests.faults.flows import save_and_start
from tests.faults.flows import two_effects as flow
from tests.faults.harness import Faults, wait_until
from tests.faults.injectors import restart_postgres
from tests.scenarios.test_runners import SideEffects
from tests.support.postgres import PostgresServer, PostgresUnavailableError

pytestmark = [pytest.mark.temporal]
SEED = 5
RUNS = 6
STEPS = ("first", "second")
START_EVERY_S = 0.25


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
def pg_node(
    settings: EngineSettings,
    tmp_path: Path,
    nats_server: EmbeddedNats,
    own_postgres: PostgresServer,
) -> Iterator[Node]:
    url = own_postgres.create_database()
    with running_node(settings, tmp_path, nats_server, store_url=url) as node:
        yield node


def _is_clear_503(answer: httpx.Response) -> bool:
    return answer.status_code == 503 and answer.headers.get("content-type", "").startswith(
        "application/problem+json"
    )


def test_runs_survive_a_database_restart_and_the_outage_is_a_clear_503(
    pg_node: Node, own_postgres: PostgresServer, target: SideEffects, faults: Faults
) -> None:
    node = pg_node
    run_ids = save_and_start(node.client, flow(target.url), RUNS)
    wait_until(lambda: target.requests, what="the first side effect")
    # A client keeps starting runs across the restart, so some starts meet it mid-transaction.
    starts: list[httpx.Response] = []
    stop = threading.Event()

    def keep_starting() -> None:
        with node.as_caller(None) as client:  # its own connections, the admin's token
            client.headers.update(node.client.headers)
            while not stop.is_set():
                starts.append(
                    client.post("/api/v1/runs", json={"flow": "pg-battery", "inputs": {}})
                )
                stop.wait(START_EVERY_S)  # the client's pace, not a wait for a condition

    starter = threading.Thread(target=keep_starting, daemon=True)
    outage: dict[str, httpx.Response] = {}

    def during_outage() -> None:
        outage["read"] = node.client.get("/api/v1/runs")
        outage["start"] = node.client.post(
            "/api/v1/runs", json={"flow": "pg-battery", "inputs": {}}
        )

    began = time.monotonic()
    starter.start()
    try:
        restart_postgres(own_postgres, faults, while_down=during_outage)
        wait_until(
            lambda: any(a.status_code == 201 for a in starts[-3:]),
            timeout=30,
            what="starts succeeding again",
        )
    finally:
        stop.set()
        starter.join(timeout=60)
    for what, answer in outage.items():
        assert _is_clear_503(answer), (what, answer.status_code, answer.text, str(faults))
        assert "Traceback" not in answer.text
        assert answer.json()["status"] == 503
    odd = [(a.status_code, a.text[:200]) for a in starts if a.status_code != 201]
    assert all(_is_clear_503(a) for a in starts if a.status_code != 201), (odd, str(faults))
    assert any(_is_clear_503(a) for a in starts), "no start met the outage"

    def ended() -> list[dict[str, Any]] | None:
        answer = node.client.get("/api/v1/runs", params={"limit": 200})
        if answer.status_code != 200:
            return None
        runs: list[dict[str, Any]] = answer.json()["items"]
        return runs if all(r["status"] in TERMINAL for r in runs) else None

    # Every run recorded, whether its client saw 201 or 503, ends: none is left pending.
    runs = wait_until(ended, timeout=90, what=f"every recorded run ended ({faults})")
    recorded = {r["run_id"] for r in runs}
    accepted = set(run_ids) | {a.json()["run_id"] for a in starts if a.status_code == 201}
    assert accepted <= recorded, (accepted - recorded, str(faults))
    with target.lock:
        performed, requested = Counter(target.done), list(target.requests)
    findings = check(runs, performed, requested, STEPS, node.config.store_url)
    assert findings.ok, f"{findings} [{faults}]"
    assert all(r["status"] == "completed" for r in runs if r["run_id"] in accepted), (
        runs,
        str(faults),
    )
    assert time.monotonic() - began < 90


def test_only_an_unreachable_database_is_taken_for_an_outage() -> None:
    """A refused connection is a 503; a bad statement on SQLite (also an OperationalError)
    stays an error of ours, a 500, instead of passing for an outage."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres"  # nothing listens
    with pytest.raises(OperationalError) as refused:
        create_engine(url).connect()
    assert classify(refused.value) == (
        503,
        "store-unavailable",
        "the database is unavailable; retry shortly",
    )
    with pytest.raises(OperationalError) as bad, create_engine("sqlite://").connect() as conn:
        conn.execute(text("SELECT * FROM no_such_table"))
    assert classify(bad.value) is None
