"""The outbox relay: pending rows reach JetStream in order, once, and survive an outage."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from amosflow.bus import Bus, EmbeddedNats, OutboxRelay, cloud_event, connect_bus, subject_for
from amosflow.bus import events as ev
from amosflow.store import OutboxEntry, Store, open_store, outbox
from tests.bus.streams import stored_count, stored_events

WAIT_S = 15.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh SQLite store with the outbox table."""
    opened = open_store(f"sqlite:///{tmp_path / 'amos.db'}")
    try:
        yield opened
    finally:
        opened.dispose()


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.05)


def _enqueue(store: Store, run_id: str, *types: str) -> list[str]:
    ids = []
    with store.session() as session:
        for type_ in types:
            event = cloud_event(type_, source="/test", subject=run_id, data={"run_id": run_id})
            outbox.enqueue(session, subject_for(type_, run_id), event)
            ids.append(event["id"])
    return ids


def _pending(store: Store) -> list[outbox.OutboxRow]:
    with store.session() as session:
        return outbox.claim_pending(session, 1000)


async def _relay_once(url: str, store: Store) -> int:
    bus = await connect_bus(url)
    try:
        return await OutboxRelay(store, bus).run_once()
    finally:
        await bus.close()


def test_publishes_pending_rows_in_order(
    nats_server: EmbeddedNats, store: Store, run_id: str
) -> None:
    """Three queued events go out in the order they were enqueued and leave nothing pending."""
    ids = _enqueue(store, run_id, ev.RUN_STARTED, ev.STEP_STARTED, ev.RUN_COMPLETED)
    assert asyncio.run(_relay_once(nats_server.url, store)) == 3
    stored = asyncio.run(stored_events(nats_server.url, f"amos.run.{run_id}.>"))
    assert [json.loads(payload)["id"] for payload in stored] == ids
    assert _pending(store) == []


def test_never_publishes_a_row_twice(nats_server: EmbeddedNats, store: Store, run_id: str) -> None:
    """A second pass sends nothing, and a row re-sent after a lost mark is still stored once."""
    _enqueue(store, run_id, ev.RUN_STARTED)
    assert asyncio.run(_relay_once(nats_server.url, store)) == 1
    assert asyncio.run(_relay_once(nats_server.url, store)) == 0
    with store.session() as session:  # the crash between publish and mark, replayed
        session.execute(update(OutboxEntry).values(published_at=None))
    assert asyncio.run(_relay_once(nats_server.url, store)) == 1
    subject = subject_for(ev.RUN_STARTED, run_id)
    assert asyncio.run(stored_count(nats_server.url, subject)) == 1


def test_rows_stay_pending_while_nats_is_down(tmp_path: Path, store: Store, run_id: str) -> None:
    """With the server stopped a pass publishes nothing and raises nothing; after a restart the row goes out."""
    server = EmbeddedNats(tmp_path / "down")
    server.start()
    subject = subject_for(ev.RUN_STARTED, run_id)

    async def scenario(bus: Bus) -> None:
        relay = OutboxRelay(store, bus)
        await bus.ensure_stream()
        server.stop()
        await _until(lambda: _disconnected(bus), "the client sees the outage")
        _enqueue(store, run_id, ev.RUN_STARTED)
        assert await relay.run_once() == 0
        [row] = _pending(store)
        assert row.attempts == 0
        server.start()
        await _until(lambda: _relayed(relay), "the relay publishes after the restart")
        assert _pending(store) == []

    async def main() -> None:
        bus = await connect_bus(server.url)
        try:
            await scenario(bus)
        finally:
            await bus.close()

    try:
        asyncio.run(main())
        assert asyncio.run(stored_count(server.url, subject)) == 1
    finally:
        server.stop()


async def _disconnected(bus: Bus) -> bool:
    return not bus.connected


async def _relayed(relay: OutboxRelay) -> bool:
    return await relay.run_once() > 0


def test_a_refused_message_does_not_hold_back_later_rows(
    nats_server: EmbeddedNats, store: Store, run_id: str
) -> None:
    """An event over the server's payload limit is marked failed and the next row still goes out."""
    with store.session() as session:
        big = cloud_event(ev.RUN_STARTED, source="/t", subject=run_id, data={"x": "y" * 2_000_000})
        outbox.enqueue(session, subject_for(ev.RUN_STARTED, run_id), big)
    _enqueue(store, run_id, ev.RUN_COMPLETED)
    assert asyncio.run(_relay_once(nats_server.url, store)) == 1
    [row] = _pending(store)
    assert row.event["id"] == big["id"]
    assert row.attempts == 1
    assert row.last_error
    assert asyncio.run(stored_count(nats_server.url, subject_for(ev.RUN_COMPLETED, run_id))) == 1


def test_run_forever_relays_until_stopped(
    nats_server: EmbeddedNats, store: Store, run_id: str
) -> None:
    """The background loop picks up a row enqueued while it runs and ends when asked."""
    subject = subject_for(ev.STEP_FAILED, run_id)

    async def main() -> None:
        bus = await connect_bus(nats_server.url)
        stop = asyncio.Event()
        task = asyncio.create_task(OutboxRelay(store, bus).run_forever(stop, interval=0.05))
        try:
            await asyncio.to_thread(_enqueue, store, run_id, ev.STEP_FAILED)
            await _until(lambda: _stored(nats_server.url, subject), "the loop publishes the row")
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=WAIT_S)
            await bus.close()

    asyncio.run(main())
    assert _pending(store) == []


async def _stored(url: str, subject: str) -> bool:
    return await stored_count(url, subject) > 0
