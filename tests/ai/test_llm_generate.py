"""`llm.generate` in real runs: schema-valid answers every time, audited, fail-closed, budgeted."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from amosflow import audit
from amosflow.store import open_store
from tests.ai.conftest import model_document
from tests.api.conftest import Node
from tests.api.flows_util import save, wait_for_end

pytestmark = pytest.mark.temporal

RUNS = 20
ANSWER = {
    "type": "object",
    "properties": {
        "n": {"type": "integer", "minimum": 0, "maximum": 100},
        "word": {"type": "string", "minLength": 1, "maxLength": 12},
        "even": {"type": "boolean"},
    },
    "required": ["n", "word", "even"],
    "additionalProperties": False,
}


def _flow(name: str, steps: list[dict[str, Any]], outputs: dict[str, Any]) -> dict[str, Any]:
    return {"dsl": "amos.flow/v1", "name": name, "outputs": outputs, "steps": steps}


def _generate(step_id: str, model: str, prompt: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "action",
        "action": "llm.generate",
        "with": {"model": model, "prompt": prompt, **extra},
    }


def _add_model(node: Node, document: dict[str, Any]) -> None:
    response = node.client.put(f"/api/v1/models/{document['name']}", json={"document": document})
    assert response.status_code == 200, response.text


def _run(node: Node, flow: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    save(node.client, flow)
    started = node.client.post("/api/v1/runs", json={"flow": flow["name"], "inputs": {}})
    assert started.status_code == 201, started.text
    return wait_for_end(node.client, started.json()["run_id"], timeout=timeout)


def _records(node: Node, action: str) -> list[audit.AuditRecord]:
    store = open_store(node.config.store_url)
    try:
        with store.session(read_only=True) as session:
            return list(audit.query(session, action=action, limit=500).items)
    finally:
        store.dispose()


def test_twenty_schema_bound_answers_all_validate_and_are_audited(
    ai_node: Node, llama_server: str
) -> None:
    """A foreach of 20 llm.generate steps with a schema: every answer validates, each is audited."""
    _add_model(ai_node, model_document("tiny", llama_server, parameters={"temperature": 0.8}))
    step = _generate(
        "ask",
        "tiny",
        "Item ${string(item)}: answer with n=${string(item)}, a short word, and whether n is even.",
        schema=ANSWER,
        max_tokens=64,
    )
    loop = {
        "id": "each",
        "type": "foreach",
        "items": list(range(RUNS)),
        "concurrency": 2,
        "steps": [step],
    }
    done = _run(ai_node, _flow("twenty", [loop], {"all": "${steps.each.output}"}), timeout=240)
    assert done["status"] == "completed", done
    answers = done["output"]["all"]
    assert len(answers) == RUNS
    for answer in answers:
        jsonschema.validate(answer["json"], ANSWER)
        assert answer["model"] == "tiny"
        assert answer["revision"].startswith("sha256:")
        assert answer["usage"]["total_tokens"] > 0
    prompts, responses = _records(ai_node, "ai.prompt"), _records(ai_node, "ai.response")
    calls = sum(a["attempts"] for a in answers)
    assert len(prompts) == len(responses) == calls
    asked = {r.details["request"]["messages"][-1]["content"] for r in prompts}
    assert all(any(f"Item {i}:" in text for text in asked) for i in range(RUNS))
    assert all(r.details["request"]["response_format"]["type"] == "json_schema" for r in prompts)
    assert all(r.details["message"]["content"] for r in responses)


def test_no_model_configured_fails_closed_saying_what_to_configure(ai_node: Node) -> None:
    """A step naming a model nobody defined fails at once, and the error says how to define it."""
    done = _run(ai_node, _flow("unset", [_generate("ask", "writer", "Hi")], {}))
    assert done["status"] == "failed"
    message = done["error"]["message"]
    assert "no model configured under the name 'writer'" in message
    assert "PUT /api/v1/models/writer" in message
    assert _records(ai_node, "ai.prompt") == []


def test_budget_refusal_fails_the_step_before_any_call(ai_node: Node, llama_server: str) -> None:
    """A run budget smaller than the call may spend refuses the call and fails the step."""
    _add_model(ai_node, model_document("tight", llama_server, budget_run_tokens=20))
    done = _run(ai_node, _flow("tight", [_generate("ask", "tight", "Hi", max_tokens=64)], {}))
    assert done["status"] == "failed"
    assert "token budget of run" in done["error"]["message"]
    assert [r.outcome for r in _records(ai_node, "ai.prompt")] == ["denied"]
    assert _records(ai_node, "ai.response") == []


def test_canary_secret_in_a_prompt_is_masked_in_the_audit(
    ai_node: Node, llama_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret interpolated into the prompt reaches the model but never the audit trail."""
    canary = "canary-5b1e0d77aa"
    monkeypatch.setenv("AMOS_SECRET_CANARY", canary)
    _add_model(ai_node, model_document("tiny", llama_server))
    step = _generate("ask", "tiny", "Repeat: ${secrets.canary}", max_tokens=16)
    flow = _flow("canary", [step], {"said": "${steps.ask.output.text}"})
    done = _run(ai_node, {**flow, "requires": {"secrets": ["canary"]}})
    assert done["status"] == "completed", done
    records = _records(ai_node, "ai.prompt") + _records(ai_node, "ai.response")
    assert len(records) == 2
    assert all(canary not in str(r.details) for r in records)
    assert "Repeat: ***" in str(records[0].details)
    assert canary not in str(done)


def test_models_api_versions_definitions_and_refuses_bad_ones(ai_node: Node) -> None:
    """Definitions are saved, listed, versioned and deleted through the API; bad ones get 422."""
    document = {"name": "w", "base_url": "http://127.0.0.1:1/v1", "model": "m", "revision": "r1"}
    _add_model(ai_node, document)
    _add_model(ai_node, {**document, "revision": "r2"})
    listed = ai_node.client.get("/api/v1/models").json()
    assert [(m["name"], m["document"]["revision"]) for m in listed] == [("w", "r2")]
    assert len(ai_node.client.get("/api/v1/models/w/history").json()) == 2
    bad = ai_node.client.put(
        "/api/v1/models/x", json={"document": {**document, "name": "x", "base_url": "ftp://h"}}
    )
    assert bad.status_code == 422
    assert "/base_url" in bad.text
    reader = ai_node.as_caller(ai_node.token_for("ann", "approver"))
    assert reader.get("/api/v1/models/w").status_code == 404  # approvers may not read models
    assert ai_node.client.delete("/api/v1/models/w").status_code == 200
    assert ai_node.client.get("/api/v1/models/w").status_code == 404
