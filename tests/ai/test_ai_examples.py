"""The AI examples in examples/ai run as documented against a real local model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from amosflow.dsl import load_flow_text
from tests.api.conftest import Node
from tests.api.flows_util import save, wait_for_end
from tests.support.llama import MODEL_ID, model_revision

AI_EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "ai"
QUEUES = {"billing": "finance", "technical": "engineering"}

pytestmark = pytest.mark.temporal


def _json(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((AI_EXAMPLES / name).read_text(encoding="utf-8"))
    return document


def test_the_ticket_triage_example_classifies_and_routes(ai_node: Node, llama_server: str) -> None:
    """The model definition template, pointed at this server, serves the triage flow; the
    answer fits the schema and the flow routes it the way its switch says."""
    flow = load_flow_text((AI_EXAMPLES / "ticket-triage.json").read_text(encoding="utf-8"))
    assert flow.name == "ticket-triage"
    model = _json("local-model.json") | {
        "base_url": llama_server,
        "model": MODEL_ID,
        "revision": model_revision(),
    }
    saved = ai_node.client.put("/api/v1/models/local", json={"document": model})
    assert saved.status_code == 200, saved.text
    save(ai_node.client, _json("ticket-triage.json"))
    started = ai_node.client.post(
        "/api/v1/runs",
        json={"flow": "ticket-triage", "inputs": {"ticket": "I was charged twice this month."}},
    )
    assert started.status_code == 201, started.text
    done = wait_for_end(ai_node.client, started.json()["run_id"], timeout=120)
    assert done["status"] == "completed", done
    output = done["output"]
    assert output["category"] in {"billing", "technical", "account", "other"}
    assert isinstance(output["urgent"], bool)
    assert output["queue"] == QUEUES.get(output["category"], "service-desk")
    assert (output["model"], output["revision"]) == ("local", model_revision())
