"""A corrupted or truncated NATS stream file: the bus comes back, says what was lost, and flows.

A node runs flows on a NATS server of its own while a durable consumer (as an integration
would keep one) reads the event stream. NATS is stopped, the stream's block file is cut in
half (a crash mid-write) or scribbled over (a bad disk), or the stream's directory is gone,
and NATS is started again; while it was
down more runs ended, their events waiting in the outbox. The node must say in its log what
was lost, publish what the outbox still held, and keep events flowing to the durable
consumer; no event may reach it twice under two ids.

Without the relay's check, a scribbled tail made NATS hand out the lost sequence numbers
again and the durable consumer, its ack floor past them, silently missed every new event.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.js.errors import NotFoundError
from sqlalchemy import func, select

from amosflow.bus import connect_bus
from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings
from amosflow.store import OutboxEntry, open_store
from tests.api.conftest import Node, running_node
from tests.api.flows_util import doc, save, wait_for_end
from tests.faults.harness import Faults, wait_until
from tests.faults.injectors import corrupt_stream

pytestmark = [pytest.mark.temporal]
SEED = 4
STREAM = "AMOS_EVENTS"
CONSUMER = "battery"
RUNS = 3
FETCH = 100


@pytest.fixture
def faults() -> Faults:
    return Faults(seed=SEED)


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A NATS server of this test alone: damaging the session's would hurt other tests."""
    server = EmbeddedNats(tmp_path / "nats-home")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bus_node(settings: EngineSettings, tmp_path: Path, own_nats: EmbeddedNats) -> Iterator[Node]:
    with running_node(settings, tmp_path, own_nats) as node:
        yield node


class Consumer:
    """A durable pull consumer on the event stream, as an integration keeps one."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.delivered: list[dict[str, Any]] = []

    def create(self) -> None:
        async def go() -> None:
            bus = await connect_bus(self.url)
            try:
                await bus.ensure_stream(STREAM)
                await bus.nc.jetstream().pull_subscribe("amos.>", durable=CONSUMER, stream=STREAM)
            finally:
                await bus.close()

        asyncio.run(go())

    def drain(self) -> list[dict[str, Any]]:
        """Fetch and acknowledge what is waiting; return all delivered so far."""

        async def go() -> None:
            bus = await connect_bus(self.url)
            try:
                try:  # (again, if the stream was lost with its consumers)
                    sub = await bus.nc.jetstream().pull_subscribe(
                        "amos.>", durable=CONSUMER, stream=STREAM
                    )
                except NotFoundError:
                    return  # not created again yet: an integration tries later
                while True:
                    try:
                        batch = await sub.fetch(FETCH, timeout=0.5)
                    except TimeoutError:
                        return
                    for msg in batch:
                        self.delivered.append(json.loads(msg.data))
                        await msg.ack()
                    if len(batch) < FETCH:
                        return  # caught up
            finally:
                await bus.close()

        asyncio.run(go())
        return self.delivered

    def has_ended(self, run_ids: set[str]) -> bool:
        """Whether the run-end event of every one of ``run_ids`` was delivered (drains first)."""
        ended = {
            e["subject"]
            for e in self.drain()
            if e["type"] in {"io.amosflow.run.completed", "io.amosflow.run.failed"}
        }
        return run_ids <= ended


def _start(node: Node, n: int) -> list[str]:
    ids = []
    for i in range(n):
        started = node.client.post(
            "/api/v1/runs", json={"flow": "greet", "inputs": {"who": str(i)}}
        )
        assert started.status_code == 201, started.text
        ids.append(started.json()["run_id"])
    return ids


def _unpublished(node: Node) -> int:
    store = open_store(node.config.store_url)
    try:
        with store.session(read_only=True) as session:
            query = select(func.count()).where(OutboxEntry.published_at.is_(None))
            return int(session.execute(query).scalar_one())
    finally:
        store.dispose()


@pytest.mark.parametrize("how", ["truncate", "scribble", "remove"])
def test_a_damaged_stream_file_is_reported_and_events_flow_again(
    bus_node: Node,
    own_nats: EmbeddedNats,
    faults: Faults,
    how: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = bus_node
    caplog.set_level(logging.WARNING, logger="amosflow.bus")
    consumer = Consumer(own_nats.url)
    consumer.create()
    save(node.client, doc())
    before = _start(node, RUNS)
    for run_id in before:
        assert wait_for_end(node.client, run_id)["status"] == "completed"
    wait_until(
        lambda: consumer.has_ended(set(before)),
        what="the first runs' events delivered",
    )
    during: list[str] = []

    def while_down() -> None:
        during.extend(_start(node, RUNS))
        for run_id in during:
            assert wait_for_end(node.client, run_id)["status"] == "completed"
        assert _unpublished(node) > 0  # their events wait in the outbox

    corrupt_stream(own_nats, STREAM, faults, how=how, while_down=while_down)
    after = _start(node, RUNS)
    for run_id in after:
        assert wait_for_end(node.client, run_id)["status"] == "completed"
    expected = set(during) | set(after)
    wait_until(
        lambda: consumer.has_ended(expected),
        timeout=60,
        what=f"events of runs after the damage delivered ({faults})",
    )
    wait_until(lambda: _unpublished(node) == 0, what="the outbox published")

    said = [r.getMessage() for r in caplog.records if r.name.startswith("amosflow.bus")]
    assert any("lost" in line and STREAM in line for line in said), (said, str(faults))
    ids_by_event: dict[tuple[str, str, Any], set[str]] = defaultdict(set)
    for event in consumer.delivered:
        data = event.get("data") or {}
        ids_by_event[(event["type"], event["subject"], data.get("step"))].add(event["id"])
    twice = {k: v for k, v in ids_by_event.items() if len(v) > 1}
    assert not twice, f"events delivered twice under different ids: {twice} [{faults}]"
