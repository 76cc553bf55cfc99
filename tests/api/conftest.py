"""A real control-plane node for API tests: uvicorn on loopback, a worker, NATS, SQLite, Git."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from amosflow.api.app import NodeConfig, create_app
from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings, RunnerSettings
from amosflow.engine.client import connect
from amosflow.engine.codec import payload_codec
from amosflow.engine.embedded import free_port
from amosflow.engine.worker import build_worker
from amosflow.identity import OidcSettings
from amosflow.store import open_store
from tests.support.identity import admin_token, caller_token


@dataclass
class Node:
    """Where a test node answers and what it keeps; ``client`` acts as an administrator."""

    url: str
    client: httpx.Client
    config: NodeConfig

    def token_for(self, username: str, role: str | None, folder: str = "*", **extra: Any) -> str:
        """An API token of a (new) user with ``role`` in ``folder``."""
        store = open_store(self.config.store_url)
        try:
            return caller_token(store, self.config.engine.home, username, role, folder, **extra)
        finally:
            store.dispose()

    def as_caller(self, token: str | None) -> httpx.Client:
        """A client of this node that sends ``token`` (or no credentials at all)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)


class _Worker(threading.Thread):
    """A flow worker on its own event loop, stopped when the test ends."""

    def __init__(self, settings: EngineSettings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._halt: asyncio.Event | None = None

    def run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._halt = asyncio.Event()
        client = await connect(
            str(self.settings.temporal_address), codec=payload_codec(self.settings.home)
        )
        async with build_worker(client, self.settings):
            self.ready.set()
            await self._halt.wait()

    def stop(self) -> None:
        if self._halt is not None:
            self._loop.call_soon_threadsafe(self._halt.set)
        self.join(timeout=30)


@contextlib.contextmanager
def running_node(
    settings: EngineSettings,
    tmp_path: Path,
    nats_server: EmbeddedNats,
    oidc: OidcSettings | None = None,
    runners: RunnerSettings | None = None,
    *,
    store_url: str | None = None,
) -> Iterator[Node]:
    """A running API with its own store and catalog, against the session Temporal server.

    ``store_url`` defaults to a SQLite file of its own; give the worker's (the one its
    settings name) for a node whose runs read the vault the API writes.
    """
    worker = _Worker(settings)
    worker.start()
    assert worker.ready.wait(30), "worker did not start"
    config = NodeConfig(
        engine=settings,
        store_url=store_url or f"sqlite:///{tmp_path / 'amos.db'}",
        catalog_path=tmp_path / "catalog",
        nats_url=nats_server.url,
        oidc=oidc or OidcSettings(home=settings.home, issuer=None),
        runners=runners or RunnerSettings(port=free_port()),
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    token = admin_token(config.store_url, settings.home)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, timeout=30, headers=headers) as client:
        for _ in range(300):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert server.started, "API did not start"
        try:
            yield Node(url=url, client=client, config=config)
        finally:
            server.should_exit = True
            thread.join(timeout=30)
            worker.stop()


@pytest.fixture
def node(settings: EngineSettings, tmp_path: Path, nats_server: EmbeddedNats) -> Iterator[Node]:
    """A running API node (see ``running_node``) whose ``client`` is an administrator."""
    with running_node(settings, tmp_path, nats_server) as running:
        yield running
