"""An MCP server that cannot be started or does not speak MCP fails saying why, never a bare 500."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.ai.conftest import model_document
from tests.api.conftest import Node
from tests.api.flows_util import save, wait_for_end
from tests.support.httpserver import LoopbackServer
from tests.support.mcp_servers import NOTES

pytestmark = pytest.mark.temporal


def _put(node: Node, document: dict[str, Any]) -> None:
    saved = node.client.put(f"/api/v1/mcp-servers/{document['name']}", json={"document": document})
    assert saved.status_code == 200, saved.text


def test_approving_an_http_endpoint_that_is_not_mcp_says_what_it_answered(
    ai_node: Node, http_server: LoopbackServer
) -> None:
    """The approval fails as a problem naming the server, its URL and the HTTP status."""
    url = f"{http_server.url}/status/404"
    _put(ai_node, {"name": "crm", "transport": "http", "url": url})
    answer = ai_node.client.post("/api/v1/mcp-servers/crm/approve")
    assert answer.status_code == 502, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["detail"] == (
        f"MCP server 'crm' at {url} did not answer as an MCP server: HTTP 404 Not Found"
    )


def test_approving_a_stdio_server_whose_command_is_missing_names_the_command(
    ai_node: Node,
) -> None:
    """The approval fails saying the command is not found in the server's sandbox."""
    _put(ai_node, {"name": "ghost", "transport": "stdio", "command": ["amos-no-such-server"]})
    answer = ai_node.client.post("/api/v1/mcp-servers/ghost/approve")
    assert answer.status_code == 502, answer.text
    assert answer.json()["detail"] == (
        "MCP server 'ghost' could not start: command 'amos-no-such-server' not found in its sandbox"
    )


def test_an_agent_step_whose_stdio_server_cannot_start_says_why(
    ai_node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that dies at start fails the step with its own last words, not a TaskGroup."""
    programs = tmp_path / "programs"
    programs.mkdir()
    launcher = programs / "crm-server"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} {NOTES} {tmp_path / 'crm'}\n")
    launcher.chmod(0o755)
    monkeypatch.setenv("AMOS_MCP_SANDBOX_READ", f"{NOTES.parent},{programs}")
    model = model_document("tiny", "http://127.0.0.1:9/v1")  # never called
    assert ai_node.client.put("/api/v1/models/tiny", json={"document": model}).status_code == 200
    _put(ai_node, {"name": "crm", "transport": "stdio", "command": [str(launcher)]})
    approved = ai_node.client.post("/api/v1/mcp-servers/crm/approve")
    assert approved.status_code == 200, approved.text
    # The server's installation breaks after its approval: its definition is unchanged.
    launcher.write_text("#!/bin/sh\necho 'crm: cannot open the customer database' >&2\nexit 1\n")
    flow = {
        "dsl": "amos.flow/v1",
        "name": "agent-broken-server",
        "steps": [
            {
                "id": "work",
                "type": "action",
                "action": "agent.run",
                "with": {"model": "tiny", "instructions": "Look it up.", "tools": ["crm.lookup"]},
            }
        ],
    }
    save(ai_node.client, flow)
    started = ai_node.client.post("/api/v1/runs", json={"flow": flow["name"], "inputs": {}})
    assert started.status_code == 201, started.text
    done = wait_for_end(ai_node.client, started.json()["run_id"], timeout=120)
    assert done["status"] == "failed", done
    message = done["error"]["message"]
    assert message.startswith("MCP server 'crm' could not start:"), message
    assert "crm: cannot open the customer database" in message
    assert "TaskGroup" not in message
