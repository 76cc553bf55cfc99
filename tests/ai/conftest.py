"""AI test fixtures: the session's real model server, and a node whose worker uses it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amosflow.ai import ModelGateway, runtime
from amosflow.bus.embedded import EmbeddedNats
from amosflow.catalog import Catalog
from amosflow.config import EngineSettings
from amosflow.store import Store, open_store
from tests.api.conftest import Node, running_node
from tests.support.llama import MODEL_ID, LlamaServer, model_revision
from tests.support.mcp_servers import NOTES

SANDBOX_UID = 65534  # who a root worker's sandboxed MCP servers run as
#: The state directories the MCP tests give their stdio notes servers, under ``tmp_path``.
MCP_STATE_DIRS = ("notes", "crm")


@pytest.fixture(scope="session")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """The running server, started once per session."""
    server = LlamaServer(tmp_path_factory.mktemp("llama")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def llama_server(llama: LlamaServer) -> str:
    """The base URL (``…/v1``) of the session's OpenAI-compatible model server."""
    return llama.base_url


def model_document(name: str, base_url: str, **extra: Any) -> dict[str, Any]:
    """A model definition for the session's server."""
    return {
        "name": name,
        "base_url": base_url,
        "model": MODEL_ID,
        "revision": model_revision(),
        "timeout_s": 120,
        # the tiny model's template has no tool syntax: the gateway constrains calls instead
        "tool_calls": "prompted",
        **extra,
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A migrated SQLite store of its own."""
    opened = open_store(f"sqlite:///{tmp_path / 'ai.db'}")
    try:
        yield opened
    finally:
        opened.dispose()


@pytest.fixture
def ai_node(settings: EngineSettings, tmp_path: Path, nats_server: EmbeddedNats) -> Iterator[Node]:
    """A running node whose flow worker's AI steps use the node's own store and catalog."""
    with running_node(settings, tmp_path, nats_server) as node:
        store = open_store(node.config.store_url)
        services = runtime.AiRuntime(store, Catalog(node.config.catalog_path), ModelGateway(store))
        previous = runtime.install(services)
        try:
            yield node
        finally:
            runtime.install(previous)
            store.dispose()


def sandbox_writable(path: Path) -> Path:
    """Make ``path`` a directory a sandboxed MCP server may write (it runs as 65534 under root)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, SANDBOX_UID, SANDBOX_UID)
    return path


@pytest.fixture(autouse=True)
def mcp_sandbox_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stdio notes servers run sandboxed: their program readable, their state dirs writable.

    A sandboxed server sees no host path it is not given (decision 0045), so the tests give
    it the test servers' directory and the state directories they name.
    """
    states = [sandbox_writable(tmp_path / name) for name in MCP_STATE_DIRS]
    monkeypatch.setenv("AMOS_MCP_SANDBOX_READ", str(NOTES.parent))
    monkeypatch.setenv("AMOS_MCP_SANDBOX_WRITE", ",".join(str(state) for state in states))
