"""The history readers: each passes a clean history and names a violation planted in a real one.

Real parts throughout: the session's Temporal server, a node's SQLite store and vault, the
embedded NATS JetStream, a real ``amos runner`` process for leases.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from temporalio import activity, workflow
from temporalio.worker import Worker

from amosflow import audit
from amosflow.bus import subject_token
from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings, RunnerSettings, StoreSettings
from amosflow.engine.client import connect
from amosflow.engine.embedded import EmbeddedTemporal, free_port
from amosflow.store import RunnerJobRow, open_store
from tests.api.conftest import Node, running_node
from tests.api.flows_util import doc, save, wait_for_end
from tests.faults import history
from tests.faults.harness import Faults, Process, wait_until
from tests.scenarios.test_runners import (
    AMOS,
    SideEffects,
    _enroll,
    _env,
    _flow,
    _runner_alive,
    _save_and_start,
)
from tests.support.httpserver import LoopbackServer
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.temporal]


@pytest.fixture
def vault_node(
    settings: EngineSettings, tmp_path: Path, nats_server: EmbeddedNats
) -> Iterator[Node]:
    """A node whose worker reads the vault and runs the API writes (one store)."""
    store_url = StoreSettings(home=settings.home).url
    with running_node(settings, tmp_path, nats_server, store_url=store_url) as node:
        yield node


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(
    request: pytest.FixtureRequest, settings: EngineSettings, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The store of a node whose worker shares it: SQLite in its home, or a PostgreSQL database."""
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        monkeypatch.setenv("AMOS_DATABASE_URL", server.create_database())
    return StoreSettings(home=settings.home).url


@pytest.fixture
def any_store_node(
    settings: EngineSettings, tmp_path: Path, nats_server: EmbeddedNats, store_url: str
) -> Iterator[Node]:
    """A vault node on each store, for the readers that read the store's tables."""
    with running_node(settings, tmp_path, nats_server, store_url=store_url) as node:
        yield node


def _start(node: Node, flow: str, inputs: dict[str, Any]) -> str:
    started = node.client.post("/api/v1/runs", json={"flow": flow, "inputs": inputs})
    assert started.status_code == 201, started.text
    return str(started.json()["run_id"])


def _address(node: Node) -> str:
    return str(node.config.engine.temporal_address)


def _http_flow(name: str, url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One ``http.request`` step run by the worker: a scheduled activity with its key."""
    step = {
        "id": "call",
        "type": "action",
        "action": "http.request",
        "with": {"method": "POST", "url": f"{url}/effect", "json": {}, "headers": headers or {}},
    }
    return {"dsl": "amos.flow/v1", "name": name, "steps": [step]}


@pytest.fixture
def http_target() -> Iterator[LoopbackServer]:
    server = LoopbackServer().start()
    try:
        yield server
    finally:
        server.stop()


def test_temporal_reader_passes_ended_and_timer_waiting_runs_and_names_a_stuck_one(
    vault_node: Node, http_target: LoopbackServer
) -> None:
    """Runs ended, on a timer or on a person pass; a workflow nobody runs is named as not ended."""
    node, home, store_url = vault_node, vault_node.config.engine.home, vault_node.config.store_url
    save(node.client, _http_flow("effect", http_target.url))
    done = _start(node, "effect", {})
    assert wait_for_end(node.client, done)["status"] == "completed"
    sleeper = doc(name="sleeper")
    sleeper["steps"].insert(0, {"id": "pause", "type": "wait", "duration": "1h"})
    save(node.client, sleeper)
    waiting = _start(node, "sleeper", {"who": "Bo"})
    ask = {"id": "ask", "type": "human", "task": "approval", "title": "Go?", "assignees": []}
    save(node.client, {"dsl": "amos.flow/v1", "name": "asks", "steps": [ask]})
    asking = _start(node, "asks", {})
    clean = wait_until(
        lambda: (
            history.temporal_histories(
                _address(node), home, [done, waiting, asking], store_url=store_url
            )
            == []
        ),
        what="the timer and the human task of the waiting runs",
    )
    assert clean

    async def plant_and_count() -> tuple[str, dict[str, int]]:
        client = await connect(_address(node))
        stuck = f"stuck-{uuid.uuid4().hex[:8]}"
        await client.start_workflow("NobodyRunsThis", id=stuck, task_queue=f"none-{stuck}")
        counted = await history.activity_completions(
            await client.get_workflow_handle(done).fetch_history(), home
        )
        return stuck, dict(counted)

    async def terminate(*run_ids: str) -> None:
        client = await connect(_address(node))
        for run_id in run_ids:
            await client.get_workflow_handle(run_id).terminate(reason="test over")

    stuck, counted = asyncio.run(plant_and_count())
    # the codec-encrypted input of the real run was decoded: its key was found, once
    assert counted == {f"{done}/call/0": 1}
    try:
        found = history.temporal_histories(_address(node), home, [done, stuck], store_url=store_url)
    finally:
        asyncio.run(terminate(stuck, waiting, asking))  # nothing left open on the shared server
    assert len(found) == 1, found
    assert f"run {stuck} did not end" in found[0]


@activity.defn(name="history_effect")
async def _effect(call: dict[str, Any]) -> str:
    return str(call["idempotency_key"])


@workflow.defn(name="HistoryEffects", sandboxed=False)
class _Effects:
    """Calls one activity per key given, in order: a key given twice is done twice."""

    @workflow.run
    async def run(self, keys: list[str]) -> None:
        for key in keys:
            await workflow.execute_activity(
                _effect, {"idempotency_key": key}, start_to_close_timeout=timedelta(seconds=30)
            )


def test_temporal_reader_names_an_activity_completed_twice_for_one_key(
    temporal_server: EmbeddedTemporal, tmp_path: Path
) -> None:
    """Two completed activities under one key are named; distinct keys pass."""
    queue = f"history-{uuid.uuid4().hex[:8]}"
    twice, once = f"twice-{queue}", f"once-{queue}"

    async def run_both() -> None:
        client = await connect(temporal_server.address)
        async with Worker(client, task_queue=queue, workflows=[_Effects], activities=[_effect]):
            for run_id, keys in ((twice, ["k/a/0", "k/a/0"]), (once, ["k/a/0", "k/b/0"])):
                await client.execute_workflow(_Effects.run, keys, id=run_id, task_queue=queue)

    asyncio.run(run_both())
    store_url = f"sqlite:///{tmp_path / 'amos.db'}"
    read = history.temporal_histories
    assert read(temporal_server.address, tmp_path, [once], store_url=store_url) == []
    found = read(temporal_server.address, tmp_path, [twice], store_url=store_url)
    assert found == ["activity for idempotency key k/a/0 completed 2 times"], found


@pytest.fixture
def fleet_node(
    settings: EngineSettings, tmp_path: Path, nats_server: EmbeddedNats, store_url: str
) -> Iterator[Node]:
    runners = RunnerSettings(port=free_port(), lease_seconds=2.0)
    with running_node(
        settings, tmp_path, nats_server, runners=runners, store_url=store_url
    ) as node:
        yield node


def test_lease_reader_passes_a_fenced_history_and_names_a_second_accepted_holder(
    fleet_node: Node, target: SideEffects, tmp_path: Path
) -> None:
    """A runner's fenced completion passes; a second accepted completion is two holders."""
    node = fleet_node
    identity = _enroll(node, tmp_path / "runner")
    argv = [AMOS, "runner", "start", "--dir", str(identity.directory)]
    runner = Process("runner", argv, _env(node), tmp_path / "runner.log", Faults()).start()
    try:
        wait_until(lambda: _runner_alive(node, identity.runner_id), what="runner up")
        run_id = _save_and_start(node, _flow(target.url))
        assert wait_for_end(node.client, run_id)["status"] == "completed"
    finally:
        runner.stop()
    job_id = f"{run_id}/call/0"
    assert history.leases(node.config.store_url) == []
    store = open_store(node.config.store_url)
    try:
        with store.session() as session:
            job = session.get(RunnerJobRow, job_id)
            assert job is not None
            assert (job.state, job.runner_id, job.fence) == ("completed", identity.runner_id, 1)
            # planted: a report from a holder whose lease had moved on, accepted anyway
            audit.append(
                session,
                actor="runner:stale",
                action="runners.complete",
                resource=f"job:{job_id}",
                folder=job.folder,
                details={"job_id": job_id, "runner_id": "stale", "fence": 0, "state": "completed"},
            )
    finally:
        store.dispose()
    found = history.leases(node.config.store_url)
    assert found, "the planted second holder was not found"
    assert all(job_id in f and "two holders" in f for f in found), found
    assert any("stale at fence 0" in f for f in found), found


def test_durable_consumer_reader_passes_a_runs_events_and_names_one_event_under_two_ids(
    vault_node: Node, nats_server: EmbeddedNats
) -> None:
    """A real run's events pass; an event again under a new id, or a second end, is named."""
    node = vault_node
    save(node.client, doc())
    run_id = _start(node, "greet", {"who": "Ada"})
    assert wait_for_end(node.client, run_id)["status"] == "completed"
    subjects = f"amos.run.{subject_token(run_id)}.>"
    delivered = wait_until(
        lambda: len(history.stream_events(nats_server.url, subjects=subjects)) >= 2,
        what="the run's events on the stream",
    )
    assert delivered
    assert history.durable_consumer(nats_server.url, subjects=subjects) == []

    stream = f"HISTORY_{uuid.uuid4().hex[:8].upper()}"
    event = {"specversion": "1.0", "type": "io.amosflow.run.completed", "subject": "r1"}

    async def plant() -> None:
        client = await nats.connect(nats_server.url)
        jetstream = client.jetstream()
        await jetstream.add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
        try:
            for msg_id in ("id-1", "id-1", "id-2"):  # a redelivery, then the same event anew
                body = json.dumps(event | {"id": msg_id, "data": {"n": 1}}).encode()
                headers = {"Nats-Msg-Id": msg_id}
                await jetstream.publish(f"{stream.lower()}.r1", body, headers=headers)
            other = event | {"id": "id-3", "subject": "r2", "data": {"n": 1}}
            await jetstream.publish(f"{stream.lower()}.r2", json.dumps(other).encode())
            # r2 ends a second time, with another outcome: a run's end delivered twice
            failed = other | {"id": "id-4", "type": "io.amosflow.run.failed", "data": {}}
            await jetstream.publish(f"{stream.lower()}.r2", json.dumps(failed).encode())
        finally:
            await client.close()

    async def drop() -> None:
        client = await nats.connect(nats_server.url)
        try:
            await client.jetstream().delete_stream(stream)
        finally:
            await client.close()

    asyncio.run(plant())
    try:
        found = history.durable_consumer(nats_server.url, stream=stream, subjects=">")
    finally:
        asyncio.run(drop())
    assert found == [
        "event io.amosflow.run.completed about r1 delivered 2 times under different ids id-1, id-2",
        "run r1 ended 2 times, under ids id-1, id-2",
        "run r2 ended 2 times, under ids id-3, id-4",
    ], found


def test_canary_reader_passes_a_vaulted_secret_and_names_each_place_a_leak_reached(
    any_store_node: Node, http_target: LoopbackServer, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    """A vault secret used by a run is nowhere in clear; a value passed as input is found."""
    node = any_store_node
    vaulted, leaked = f"canary-{uuid.uuid4().hex}", f"canary-{uuid.uuid4().hex}"
    saved = node.client.put("/api/v1/secrets/api.token", json={"value": vaulted})
    assert saved.status_code == 201, saved.text
    flow = _http_flow("vaulted", http_target.url, {"Authorization": "Bearer ${secrets.api.token}"})
    flow["requires"] = {"secrets": ["api.token"]}
    save(node.client, flow)
    used = _start(node, "vaulted", {})
    assert wait_for_end(node.client, used)["status"] == "completed"
    assert any(r.headers.get("authorization") == f"Bearer {vaulted}" for r in http_target.requests)
    save(node.client, doc())
    leaking = _start(node, "greet", {"who": leaked})  # planted: a secret passed as plain input
    assert wait_for_end(node.client, leaking)["status"] == "completed"
    log = tmp_path / "node.log"
    log.write_text(f"started with {leaked}\n")  # planted: a log line with the value

    home = node.config.engine.home
    found = history.secret_canaries(
        [vaulted, leaked],
        store_url=node.config.store_url,
        paths=[tmp_path, nats_server.home / "nats"],
        temporal=(_address(node), home, [used, leaking]),
    )
    assert not [f for f in found if "#0" in f], found  # the vaulted secret is nowhere in clear
    assert f"secret canary #1 appears in file {log}" in found
    assert "secret canary #1 appears in store table runs" in found
    assert f"secret canary #1 appears in the Temporal history of run {leaking}" in found
    assert vaulted not in "".join(found)
    assert leaked not in "".join(found)
