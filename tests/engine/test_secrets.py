"""Secret values never enter workflow history, results or error messages."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from amosflow.config import EngineSettings
from amosflow.engine.client import connect
from amosflow.engine.codec import payload_codec
from amosflow.testing import run_flow
from tests.engine.flows import flow
from tests.engine.test_codec import history_payloads
from tests.support.history import history_text

pytestmark = pytest.mark.temporal

CANARY = "canary-7f3a9c1e-do-not-leak"


def _run_and_history(
    settings: EngineSettings, doc: dict[str, Any], run_id: str
) -> tuple[dict[str, Any], str]:
    async def go() -> tuple[dict[str, Any], str]:
        codec = payload_codec(settings.home, create=True)
        client = await connect(str(settings.temporal_address), codec=codec)
        result = await run_flow(settings, doc, {}, run_id=run_id, client=client)
        history = await client.get_workflow_handle(run_id).fetch_history()
        decoded = await codec.decode(history_payloads(history))  # even decrypted: no secret
        plain = "\n".join(p.data.decode(errors="replace") for p in decoded)
        return result, history_text(history) + "\n" + plain

    return asyncio.run(go())


def test_secret_reaches_the_server_but_not_the_history(
    settings: EngineSettings, http_server, monkeypatch
) -> None:
    """The server receives the secret; the history and the result do not contain it."""
    monkeypatch.setenv("AMOS_SECRET_API_TOKEN", CANARY)
    step = {
        "id": "call",
        "type": "action",
        "action": "http.request",
        "with": {
            "url": f"{http_server.url}/private",
            "headers": {"Authorization": "Bearer ${secrets.api.token}"},
        },
    }
    doc = flow(
        step, requires={"secrets": ["api.token"]}, outputs={"status": "${steps.call.output.status}"}
    )
    result, history = _run_and_history(settings, doc, "secret-ok-1")
    assert result["status"] == "completed"
    assert http_server.requests[0].headers["authorization"] == f"Bearer {CANARY}"
    assert CANARY not in history
    assert CANARY not in str(result)


def test_secret_is_masked_in_error_messages(
    settings: EngineSettings, http_server, monkeypatch
) -> None:
    """When an action fails with the secret in its message, the message shows *** instead."""
    monkeypatch.setenv("AMOS_SECRET_API_TOKEN", CANARY)
    step = {
        "id": "call",
        "type": "action",
        "action": "http.request",
        "with": {
            "url": f"{http_server.url}/status/500?token=${{secrets.api.token}}",
            "expect": [200],
        },
        "retry": {"max_attempts": 1},
    }
    doc = flow(step, requires={"secrets": ["api.token"]})
    result, history = _run_and_history(settings, doc, "secret-fail-1")
    assert result["status"] == "failed"
    assert "token=***" in result["error"]["message"]
    assert CANARY not in history
    assert CANARY not in str(result)


def test_unbound_secret_fails_without_retry(
    settings: EngineSettings, http_server, monkeypatch
) -> None:
    """A secret with no binding fails the step once, naming the secret but no value."""
    monkeypatch.delenv("AMOS_SECRET_MISSING_ONE", raising=False)
    step = {
        "id": "call",
        "type": "action",
        "action": "http.request",
        "with": {"url": f"{http_server.url}/x", "headers": {"X-Key": "${secrets.missing.one}"}},
    }
    result, _ = _run_and_history(
        settings, flow(step, requires={"secrets": ["missing.one"]}), "secret-missing-1"
    )
    assert result["error"]["type"] == "SecretMissing"
    assert "missing.one" in result["error"]["message"]
    assert http_server.requests == []
