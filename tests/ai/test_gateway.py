"""The model gateway against a real model: audit, masking, budgets, egress, fail closed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from amosflow import audit
from amosflow.ai import (
    CallContext,
    ChatResult,
    ModelDefinition,
    ModelGateway,
    estimate_tokens,
    resolve_model,
)
from amosflow.catalog import Catalog
from amosflow.egress import EgressDeniedError, EgressPolicy
from amosflow.errors import AIConfigurationError, BudgetExceededError
from amosflow.store import AiUsageRow, Store
from tests.ai.conftest import model_document

LOOPBACK = EgressPolicy.from_config({}, extra_allow=["127.0.0.1"])
HELLO = [{"role": "user", "content": "Say hello in one word."}]


def _records(store: Store, action: str) -> list[audit.AuditRecord]:
    with store.session(read_only=True) as session:
        return list(audit.query(session, action=action, limit=500).items)


def _context(**extra: Any) -> CallContext:
    return CallContext(run_id="run-1", step_id="ask", flow="f", egress=LOOPBACK, **extra)


def _chat(
    gateway: ModelGateway, model: ModelDefinition, messages: list[dict[str, Any]], **kw: Any
) -> ChatResult:
    """One call on a fresh event loop, closing the loop's connections after it."""

    async def go() -> ChatResult:
        try:
            return await gateway.chat(model, messages, **kw)
        finally:
            await gateway.aclose()

    return asyncio.run(go())


def test_chat_answers_counts_and_audits_prompt_and_response(
    store: Store, llama_server: str
) -> None:
    """A call returns text, usage, model and revision, and leaves a prompt and a response record."""
    model = ModelDefinition(**model_document("tiny", llama_server))
    result = _chat(ModelGateway(store), model, HELLO, context=_context(), max_tokens=8)
    assert result.text
    assert result.usage.total_tokens > 0
    assert (result.model, result.revision) == ("tiny", model.revision)
    assert result.latency_ms > 0
    prompt, response = _records(store, "ai.prompt"), _records(store, "ai.response")
    assert len(prompt) == len(response) == 1
    assert prompt[0].details["request"]["messages"] == HELLO
    assert prompt[0].resource == "models/tiny"
    assert response[0].details["message"]["content"] == result.text
    assert response[0].details["usage"]["total_tokens"] == result.usage.total_tokens
    with store.session(read_only=True) as session:
        row = session.scalars(select(AiUsageRow)).one()
    assert (row.outcome, row.total_tokens, row.run_id) == ("ok", result.usage.total_tokens, "run-1")
    assert audit.verify(store, sink=None, public_key=None).ok


def test_canary_secret_is_masked_in_both_records(store: Store, llama_server: str) -> None:
    """A secret value in the prompt never reaches the audit trail; *** stands in its place."""
    canary = "canary-7f3a9c1e55d2"
    model = ModelDefinition(**model_document("tiny", llama_server))
    messages = [{"role": "user", "content": f"Repeat exactly: {canary}"}]
    _chat(ModelGateway(store), model, messages, context=_context(secrets=(canary,)), max_tokens=16)
    records = _records(store, "ai.prompt") + _records(store, "ai.response")
    assert len(records) == 2
    assert all(canary not in str(r.details) for r in records)
    assert "Repeat exactly: ***" in str(records[0].details)


def test_budget_is_refused_before_the_call_and_audited(store: Store, llama_server: str) -> None:
    """Once a run has spent its budget, the next call is refused without reaching the model."""
    first = estimate_tokens([HELLO, None, None]) + 8
    model = ModelDefinition(**model_document("tiny", llama_server, budget_run_tokens=first))
    gateway = ModelGateway(store)
    _chat(gateway, model, HELLO, context=_context(), max_tokens=8)
    with pytest.raises(BudgetExceededError, match="token budget of run 'run-1'") as caught:
        _chat(gateway, model, HELLO, context=_context(), max_tokens=8)
    assert caught.value.budget == first
    assert not caught.value.retryable
    denied = [r for r in _records(store, "ai.prompt") if r.outcome == "denied"]
    assert len(denied) == 1
    assert len(_records(store, "ai.response")) == 1  # only the first call was made
    other_run = CallContext(run_id="run-2", step_id="ask", egress=LOOPBACK)
    assert _chat(gateway, model, HELLO, context=other_run, max_tokens=8).text


def test_folder_budget_caps_an_unbounded_answer(store: Store, llama_server: str) -> None:
    """Without max_tokens, the gateway lets the answer spend at most what the folder has left."""
    budget = estimate_tokens([HELLO, None, None]) + 5
    model = ModelDefinition(**model_document("tiny", llama_server, budget_folder_tokens=budget))
    result = _chat(ModelGateway(store), model, HELLO, context=_context())
    assert result.usage.completion_tokens <= 5
    assert _records(store, "ai.prompt")[0].details["request"]["max_tokens"] == 5


def test_sdk_client_is_governed_and_limited_to_chat_completions(
    store: Store, llama_server: str
) -> None:
    """Requests through ``http_client`` are audited; anything but chat completions is refused."""
    model = ModelDefinition(**model_document("tiny", llama_server))

    async def use() -> int:
        gateway = ModelGateway(store)
        async with gateway.http_client(model, _context(purpose="authoring")) as client:
            response = await client.post(
                model.chat_url, json={"model": "ignored", "messages": HELLO, "max_tokens": 4}
            )
            with pytest.raises(AIConfigurationError, match="forwards only POST"):
                await client.get(f"{model.base_url}/models")
            with pytest.raises(AIConfigurationError, match="forwards only POST"):
                await client.post("http://127.0.0.1:9/v1/chat/completions", json={})
        await gateway.aclose()
        return response.status_code

    assert asyncio.run(use()) == httpx.codes.OK
    prompt = _records(store, "ai.prompt")
    assert len(prompt) == 1
    assert prompt[0].details["purpose"] == "authoring"
    assert prompt[0].details["model_id"] == model.model  # the definition's id, not the client's


def test_base_url_obeys_the_egress_policy(store: Store, llama_server: str) -> None:
    """A policy that does not open loopback stops the call before any prompt is audited."""
    model = ModelDefinition(**model_document("tiny", llama_server))
    closed = CallContext(run_id="run-1", egress=EgressPolicy.from_config({}))
    with pytest.raises(EgressDeniedError):
        _chat(ModelGateway(store), model, HELLO, context=closed)
    assert _records(store, "ai.prompt") == []


def test_missing_model_fails_closed_naming_what_to_configure(tmp_path: Path) -> None:
    """Resolving a model nobody defined says how to define one; there is no default endpoint."""
    catalog = Catalog(tmp_path / "catalog")
    with pytest.raises(AIConfigurationError) as caught:
        resolve_model("writer", catalog, folder="default")
    message = str(caught.value)
    assert "no model configured under the name 'writer'" in message
    assert "PUT /api/v1/models/writer" in message
    assert "amos model push" in message
    assert not caught.value.retryable


def test_definition_refuses_bad_endpoints_and_reserved_parameters() -> None:
    """A definition must name an http(s) endpoint without credentials and leave gateway fields alone."""
    good = {"name": "tiny", "base_url": "http://127.0.0.1:1/v1", "model": "m", "revision": "r1"}
    with pytest.raises(ValueError, match="http"):
        ModelDefinition(**{**good, "base_url": "file:///etc/passwd"})
    with pytest.raises(ValueError, match="credentials"):
        ModelDefinition(**{**good, "base_url": "http://u:p@host/v1"})
    with pytest.raises(ValueError, match="may not set messages"):
        ModelDefinition(**{**good, "parameters": {"messages": []}})
