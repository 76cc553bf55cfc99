"""MCP over HTTP resolves each name, checks every address, and connects only to a checked one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from amosflow import egress
from amosflow.ai import ReceiptSigner, mcp
from amosflow.catalog import Catalog
from amosflow.egress import EgressDeniedError
from amosflow.store import Store
from tests.api.conftest import Node
from tests.conftest import LOOPBACK_EGRESS
from tests.support.httpserver import LoopbackServer
from tests.support.mcp_servers import calls, http_notes


@pytest.fixture
def notes_on_localhost(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real MCP server over HTTP, and its URL spelled with the name ``localhost``."""
    state = tmp_path / "http-notes"
    with http_notes(state) as url:
        yield state, url.replace("127.0.0.1", "localhost")


@pytest.mark.temporal
def test_approving_a_server_named_localhost_is_refused_before_connecting(
    ai_node: Node, http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL whose name resolves to loopback is refused by address; nothing reaches it."""
    monkeypatch.delenv("AMOS_EGRESS_ALLOW")  # loopback closed, as in production
    port = http_server.url.rsplit(":", 1)[1]
    document = {"name": "crm", "transport": "http", "url": f"http://localhost:{port}/mcp"}
    saved = ai_node.client.put("/api/v1/mcp-servers/crm", json={"document": document})
    assert saved.status_code == 200, saved.text
    answer = ai_node.client.post("/api/v1/mcp-servers/crm/approve")
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"].startswith(
        f"egress to localhost:{port} refused: its address 127.0.0.1 is a loopback address"
    )
    assert http_server.requests == []


def test_a_call_to_a_name_that_resolves_to_loopback_is_refused_at_connect(
    store: Store,
    tmp_path: Path,
    notes_on_localhost: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under a run's policy that closes loopback, an approved server named localhost is refused."""
    state, url = notes_on_localhost
    catalog = Catalog(tmp_path / "catalog")
    document = {"name": "remote", "transport": "http", "url": url}
    mcp.save(store, catalog, document, author="t", message="s", actor="user:t", folder="default")
    monkeypatch.setenv("AMOS_EGRESS_ALLOW", LOOPBACK_EGRESS)  # the approver's worker opens it
    asyncio.run(
        mcp.approve(store, catalog, "remote", folder="default", author="t", actor="user:admin")
    )
    gateway = mcp.McpGateway(
        mcp.load_servers(catalog, ["remote"], "default"),
        allowlist=["remote.echo"],
        signer=ReceiptSigner.from_file(tmp_path / "keys" / "receipts.key"),
        audit=mcp.store_audit(store, "engine:agent"),
        scope="run-1/step/0",
        egress_policy=egress.EgressPolicy.from_config({}),  # a run's policy: loopback closed
    )

    async def go() -> None:
        async with gateway:
            await gateway.call("remote.echo", {"text": "over http"})

    with pytest.raises(EgressDeniedError, match=r"its address 127\.0\.0\.1 is a loopback address"):
        asyncio.run(go())
    assert calls(state) == []
