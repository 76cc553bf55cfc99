"""Run, step and trigger events reach NATS JetStream as CloudEvents, through the outbox."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats
import pytest

from amosflow.bus import parse_event, subject_token
from tests.api.conftest import Node
from tests.api.flows_util import doc, save, wait_for_end

pytestmark = pytest.mark.temporal


async def _events_of(
    url: str, run_id: str, until_type: str, timeout: float = 30
) -> list[dict[str, Any]]:
    """Read the stream from its start and keep this run's events until `until_type` arrives."""
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        sub = await js.subscribe(
            f"amos.run.{subject_token(run_id)}.>",
            ordered_consumer=True,
            deliver_policy=nats.js.api.DeliverPolicy.ALL,
        )
        found: list[dict[str, Any]] = []
        while not found or found[-1]["type"] != until_type:
            message = await sub.next_msg(timeout=timeout)
            found.append(json.loads(message.data))
            parse_event(message.data)  # and it is a valid CloudEvent
        return found
    finally:
        await client.close()


def test_run_events_are_published_as_cloudevents(node: Node) -> None:
    """A run publishes run.started, step events and run.completed, each once, in order."""
    save(node.client, doc())
    run_id = node.client.post(
        "/api/v1/runs", json={"flow": "greet", "inputs": {"who": "bus"}}
    ).json()["run_id"]
    assert wait_for_end(node.client, run_id)["status"] == "completed"
    assert node.config.nats_url is not None
    events = asyncio.run(_events_of(node.config.nats_url, run_id, "io.amosflow.run.completed"))
    types = [e["type"] for e in events]
    assert types[0] == "io.amosflow.run.started"
    assert "io.amosflow.step.completed" in types
    assert types[-1] == "io.amosflow.run.completed"
    assert len({e["id"] for e in events}) == len(events)
    for event in events:
        assert event["specversion"] == "1.0"
        assert event["subject"] == run_id
    completed = events[-1]["data"]
    assert json.loads(json.dumps(completed))["output"] == {"greeting": "Hello, bus!"}
