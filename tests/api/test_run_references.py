"""A run resolves every reference in its own folder: another folder's never reaches it.

For each kind of reference a run resolves (secret, config, model, MCP server, child flow),
`beta` holds it and `alpha` does not. The same flow run in `alpha` fails before any side
effect, with an error that names the reference and says nothing of `beta`; run in `beta`,
where the reference is, it gets through, so each check can fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amosflow.ai import ModelGateway, runtime
from amosflow.bus.embedded import EmbeddedNats
from amosflow.catalog import Catalog
from amosflow.config import EngineSettings, StoreSettings
from amosflow.store import open_store
from tests.api.conftest import Node, running_node
from tests.api.flows_util import wait_for_end
from tests.support.httpserver import LoopbackServer
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.temporal
CANARY = "beta-secret-canary-71d3"


@pytest.fixture(params=["sqlite", "postgresql"])
def node(
    request: pytest.FixtureRequest,
    settings: EngineSettings,
    tmp_path: Path,
    nats_server: EmbeddedNats,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Node]:
    """A node whose worker reads the vault, runs and catalog the API writes; two folders."""
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        monkeypatch.setenv("AMOS_DATABASE_URL", server.create_database())
    store_url = StoreSettings(home=settings.home).url
    with running_node(settings, tmp_path, nats_server, store_url=store_url) as running:
        store = open_store(store_url)
        catalog = Catalog(running.config.catalog_path)
        previous = runtime.install(runtime.AiRuntime(store, catalog, ModelGateway(store)))
        try:
            for folder in ("alpha", "beta"):
                created = running.client.post("/api/v1/folders", json={"name": folder})
                assert created.status_code == 201, created.text
            yield running
        finally:
            runtime.install(previous)
            store.dispose()


def put(node: Node, kind: str, name: str, document: dict[str, Any], folder: str) -> None:
    """Save a catalog object into ``folder`` as the administrator."""
    body = {"document": document, "folder": folder}
    response = node.client.put(f"/api/v1/{kind}/{name}", json=body)
    assert response.status_code == 200, response.text


def flow(name: str, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"dsl": "amos.flow/v1", "name": name, "steps": steps, **extra}


def run_in(node: Node, name: str, folder: str) -> dict[str, Any]:
    """Start the flow in ``folder`` and wait for its end."""
    started = node.client.post("/api/v1/runs", json={"flow": name, "folder": folder})
    assert started.status_code == 201, started.text
    return wait_for_end(node.client, started.json()["run_id"])


def assert_refused_without_beta(text: str, reference: str) -> None:
    assert reference in text
    assert "beta" not in text
    assert CANARY not in text


def test_a_secret_of_another_folder_is_never_resolved(
    node: Node, http_server: LoopbackServer
) -> None:
    """A secret only beta's vault holds refuses alpha's run; the same run in beta sends it."""
    call = {"method": "GET", "url": f"{http_server.url}/ping"}
    call["headers"] = {"Authorization": "${secrets.token}"}
    step = {"id": "call", "type": "action", "action": "http.request", "with": call}
    document = flow("uses-secret", [step], requires={"secrets": ["token"]})
    for folder in ("alpha", "beta"):
        put(node, "flows", "uses-secret", document, folder)
    stored = node.client.put("/api/v1/secrets/token", json={"value": CANARY, "folder": "beta"})
    assert stored.status_code == 201, stored.text
    refused = node.client.post("/api/v1/runs", json={"flow": "uses-secret", "folder": "alpha"})
    assert refused.status_code == 422
    assert_refused_without_beta(refused.text, "secret:token")
    assert http_server.requests == []
    assert run_in(node, "uses-secret", "beta")["status"] == "completed"
    assert [r.headers.get("authorization") for r in http_server.requests] == [CANARY]


def test_a_config_bundle_of_another_folder_binds_nothing(
    node: Node, http_server: LoopbackServer
) -> None:
    """A required key only beta's bundle sets refuses alpha's run; beta's run gets it."""
    step = {
        "id": "call",
        "type": "action",
        "action": "http.request",
        "with": {"method": "GET", "url": "${config.endpoint}"},
    }
    document = flow("uses-config", [step], requires={"config": ["endpoint"]})
    for folder in ("alpha", "beta"):
        put(node, "flows", "uses-config", document, folder)
    bundle = {"name": "base", "layer": "base", "values": {"endpoint": f"{http_server.url}/cfg"}}
    put(node, "configs", "base", bundle, "beta")
    refused = node.client.post("/api/v1/runs", json={"flow": "uses-config", "folder": "alpha"})
    assert refused.status_code == 422
    assert_refused_without_beta(refused.text, "config:endpoint")
    view = node.client.get("/api/v1/config/effective", params={"folder": "alpha"}).json()
    assert view["values"] == {}
    assert http_server.requests == []
    assert run_in(node, "uses-config", "beta")["status"] == "completed"
    assert [r.path for r in http_server.requests] == ["/cfg"]


def test_a_model_of_another_folder_is_never_called(node: Node, http_server: LoopbackServer) -> None:
    """An llm.generate step naming beta's model fails in alpha before any request is made."""
    step = {
        "id": "ask",
        "type": "action",
        "action": "llm.generate",
        "with": {"model": "writer", "prompt": "hi", "max_tokens": 5},
    }
    for folder in ("alpha", "beta"):
        put(node, "flows", "uses-model", flow("uses-model", [step]), folder)
    model = {
        "name": "writer",
        "base_url": f"{http_server.url}/v1",
        "model": "m",
        "revision": CANARY,
    }
    put(node, "models", "writer", model, "beta")
    failed = run_in(node, "uses-model", "alpha")
    assert failed["status"] == "failed"
    assert_refused_without_beta(str(failed["error"]), "writer")
    assert http_server.requests == []
    run_in(node, "uses-model", "beta")  # the answer is no model's, but the call was made
    assert [r.path for r in http_server.requests][:1] == ["/v1/chat/completions"]


def test_an_mcp_server_of_another_folder_is_never_reached(
    node: Node, http_server: LoopbackServer
) -> None:
    """An agent step naming beta's server fails in alpha before its model or the server."""
    model = {"name": "writer", "base_url": f"{http_server.url}/v1", "model": "m", "revision": "r"}
    put(node, "models", "writer", model, "alpha")
    server = {"name": "crm", "transport": "http", "url": f"{http_server.url}/mcp"}
    put(node, "mcp-servers", "crm", server, "beta")
    step = {
        "id": "triage",
        "type": "action",
        "action": "agent.run",
        "with": {
            "model": "writer",
            "instructions": "look it up",
            "input": "x",
            "tools": ["crm.lookup"],
            "autonomy": "read_only",
        },
    }
    put(node, "flows", "uses-mcp", flow("uses-mcp", [step]), "alpha")
    failed = run_in(node, "uses-mcp", "alpha")
    assert failed["status"] == "failed"
    assert_refused_without_beta(str(failed["error"]), "crm")
    assert http_server.requests == []


def test_a_child_flow_of_another_folder_is_never_called(
    node: Node, http_server: LoopbackServer
) -> None:
    """A `call` of a flow only beta holds refuses alpha's run before it starts."""
    child_step = {
        "id": "call",
        "type": "action",
        "action": "http.request",
        "with": {"method": "GET", "url": f"{http_server.url}/child"},
    }
    put(node, "flows", "child", flow("child", [child_step]), "beta")
    parent = flow("parent", [{"id": "go", "type": "call", "flow": "child"}])
    for folder in ("alpha", "beta"):
        put(node, "flows", "parent", parent, folder)
    refused = node.client.post("/api/v1/runs", json={"flow": "parent", "folder": "alpha"})
    assert refused.status_code == 422
    assert_refused_without_beta(refused.text, "child")
    assert refused.json()["errors"][0]["pointer"] == "/steps/0/flow"
    assert http_server.requests == []
    assert run_in(node, "parent", "beta")["status"] == "completed"
    assert [r.path for r in http_server.requests] == ["/child"]
