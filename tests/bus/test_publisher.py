"""Publishing CloudEvents to JetStream: one durable stream, exactly-once by event id."""

from __future__ import annotations

import asyncio
import json

import pytest
from nats.js.api import StorageType

from amosflow.bus import DEFAULT_STREAM, Ack, EmbeddedNats, cloud_event, connect_bus, subject_for
from amosflow.bus import events as ev
from amosflow.errors import BusError
from tests.bus.streams import stored_count, stored_events


def test_duplicate_publish_of_the_same_event_is_stored_once(
    nats_server: EmbeddedNats, run_id: str
) -> None:
    """A re-publish with the same CloudEvent id is acknowledged as a duplicate and not stored."""
    event = cloud_event(ev.RUN_STARTED, source="/test", subject=run_id, data={"run_id": run_id})
    subject = subject_for(ev.RUN_STARTED, run_id)

    async def publish_twice() -> tuple[bool, bool, int]:
        bus = await connect_bus(nats_server.url)
        try:
            first = await bus.publish(subject, event)
            second = await bus.publish(subject, event)
        finally:
            await bus.close()
        return first.duplicate, second.duplicate, second.seq - first.seq

    assert asyncio.run(publish_twice()) == (False, True, 0)
    assert asyncio.run(stored_count(nats_server.url, subject)) == 1


def test_ensure_stream_is_idempotent_and_durable(nats_server: EmbeddedNats) -> None:
    """Ensuring the stream again changes nothing: file storage, `amos.>`, a duplicate window."""

    async def ensure_twice() -> tuple[list[str] | None, StorageType | None, float | None]:
        bus = await connect_bus(nats_server.url)
        try:
            await bus.ensure_stream(DEFAULT_STREAM)
            await bus.ensure_stream(DEFAULT_STREAM)
            info = await bus.nc.jetstream().stream_info(DEFAULT_STREAM)
        finally:
            await bus.close()
        config = info.config
        return config.subjects, config.storage, config.duplicate_window

    subjects, storage, window = asyncio.run(ensure_twice())
    assert subjects == ["amos.>"]
    assert storage == StorageType.FILE
    assert window == pytest.approx(120.0)


def test_a_second_stream_name_over_the_same_subjects_is_refused(nats_server: EmbeddedNats) -> None:
    """Two streams cannot both capture `amos.>`: the error says so instead of passing silently."""

    async def ensure_other() -> None:
        bus = await connect_bus(nats_server.url)
        try:
            await bus.ensure_stream("SOMETHING_ELSE")
        finally:
            await bus.close()

    with pytest.raises(BusError, match="SOMETHING_ELSE"):
        asyncio.run(ensure_other())


def test_connecting_to_nothing_fails_with_a_bus_error() -> None:
    """An unreachable server is a BusError within the connect timeout, not a hang."""
    from amosflow.engine.embedded import free_port

    with pytest.raises(BusError, match="cannot connect"):
        asyncio.run(connect_bus(f"nats://127.0.0.1:{free_port()}"))


def test_an_event_without_id_is_refused_as_not_retryable(nats_server: EmbeddedNats) -> None:
    """Without a CloudEvent id there is nothing to de-duplicate by, so it never goes out."""

    async def publish() -> None:
        bus = await connect_bus(nats_server.url)
        try:
            await bus.publish("amos.run.x.started", {"type": ev.RUN_STARTED})
        finally:
            await bus.close()

    with pytest.raises(BusError) as caught:
        asyncio.run(publish())
    assert caught.value.retryable is False


def test_a_pipelined_batch_is_stored_in_order_and_answered_per_event(
    nats_server: EmbeddedNats, run_id: str
) -> None:
    """`publish_many` stores every event in the order given; a refused one fails alone.

    The batch holds an event without an id and one over the server's message limit between
    good ones, and a repeat of an earlier event, which JetStream answers as a duplicate.
    """
    subject = subject_for(ev.STEP_COMPLETED, run_id)
    good = [
        cloud_event(ev.STEP_COMPLETED, source="/t", subject=run_id, data={"n": n})
        for n in range(50)
    ]
    big = cloud_event(ev.STEP_COMPLETED, source="/t", subject=run_id, data={"x": "y" * 2_000_000})
    batch = [(subject, e) for e in good[:10]]
    batch += [(subject, {"type": "no-id"}), (subject, big)]
    batch += [(subject, e) for e in good[10:]] + [(subject, good[0])]

    async def publish() -> list[Ack | BusError]:
        bus = await connect_bus(nats_server.url)
        try:
            return await bus.publish_many(batch)
        finally:
            await bus.close()

    answers = asyncio.run(publish())
    assert len(answers) == len(batch)
    refused = answers[10:12]
    assert all(isinstance(a, BusError) and not a.retryable for a in refused)
    assert "message limit" in str(refused[1])
    acks = [a for a in answers[:10] + answers[12:-1] if isinstance(a, Ack)]
    assert len(acks) == len(good)
    assert [a.seq for a in acks] == sorted(a.seq for a in acks)
    assert not any(a.duplicate for a in acks)
    repeat = answers[-1]
    assert isinstance(repeat, Ack)
    assert repeat.duplicate
    stored = asyncio.run(stored_events(nats_server.url, subject))
    assert [json.loads(payload)["id"] for payload in stored] == [e["id"] for e in good]
