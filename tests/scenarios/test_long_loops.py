"""Loops of 10,000 iterations with an action in each complete despite Temporal's history limits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import Client

from amosflow.config import EngineSettings
from amosflow.engine.client import connect
from amosflow.testing import run_flow

pytestmark = [pytest.mark.temporal, pytest.mark.slow]

ITERATIONS = 10_000
HISTORY_EVENT_LIMIT = 51_200


async def _run_and_measure(
    settings: EngineSettings, doc: dict[str, Any], run_id: str
) -> tuple[dict[str, Any], dict[str, int]]:
    client: Client = await connect(str(settings.temporal_address))
    result = await run_flow(settings, doc, {}, run_id=run_id, client=client)
    lengths: dict[str, int] = {}
    async for execution in client.list_workflows(f"WorkflowId STARTS_WITH '{run_id}'"):
        history = await client.get_workflow_handle(
            execution.id, run_id=execution.run_id
        ).fetch_history()
        lengths[execution.id] = len(history.events)
    return result, lengths


def test_foreach_of_ten_thousand_actions(settings: EngineSettings) -> None:
    """A 10,000-item foreach with an action per item completes, in order, with bounded histories."""
    doc = {
        "dsl": "amos.flow/v1",
        "name": "big-foreach",
        "steps": [
            {
                "id": "loop",
                "type": "foreach",
                "items": "${inputs.n}",
                "steps": [
                    {
                        "id": "e",
                        "type": "action",
                        "action": "core.echo",
                        "with": {"value": "${item * 2}"},
                    }
                ],
            }
        ],
        "outputs": {
            "count": "${size(steps.loop.output)}",
            "last": "${steps.loop.output[9999]}",
            "first": "${steps.loop.output[0]}",
        },
    }
    doc["steps"][0]["items"] = list(range(ITERATIONS))
    result, lengths = asyncio.run(_run_and_measure(settings, doc, "big-foreach-1"))
    assert result["status"] == "completed", result
    assert result["output"] == {"count": ITERATIONS, "first": 0, "last": 2 * (ITERATIONS - 1)}
    assert len(lengths) > 1, "the loop must have been split across child runs"
    assert max(lengths.values()) < HISTORY_EVENT_LIMIT


def test_while_of_ten_thousand_actions(settings: EngineSettings) -> None:
    """A 10,000-iteration while with an action per iteration completes with bounded histories."""
    doc = {
        "dsl": "amos.flow/v1",
        "name": "big-while",
        "steps": [
            {"id": "init", "type": "set", "values": {"i": 0}},
            {
                "id": "loop",
                "type": "while",
                "condition": "${vars.i < 10000}",
                "max_iterations": 10000,
                "steps": [
                    {
                        "id": "e",
                        "type": "action",
                        "action": "core.echo",
                        "with": {"value": "${vars.i}"},
                    },
                    {"id": "inc", "type": "set", "values": {"i": "${steps.e.output + 1}"}},
                ],
            },
        ],
        "outputs": {"i": "${vars.i}", "last": "${steps.e.output}"},
    }
    result, lengths = asyncio.run(_run_and_measure(settings, doc, "big-while-1"))
    assert result["status"] == "completed", result
    assert result["output"] == {"i": ITERATIONS, "last": ITERATIONS - 1}
    assert len(lengths) > 1, "the loop must have been split across child runs"
    assert max(lengths.values()) < HISTORY_EVENT_LIMIT
