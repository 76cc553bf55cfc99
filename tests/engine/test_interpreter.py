"""The interpreter runs every control-flow step inside the workflow, as DSL.md says."""

from __future__ import annotations

from typing import Any

import pytest

from amosflow.config import EngineSettings
from amosflow.testing import run_flow
from tests.engine.flows import echo, flow

pytestmark = pytest.mark.temporal


def run(
    settings: EngineSettings, doc: dict[str, Any], inputs: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    import asyncio

    return asyncio.run(run_flow(settings, doc, inputs, **kw))


def test_echo_and_outputs(settings: EngineSettings) -> None:
    """An action's output is visible to later expressions and to the flow outputs."""
    doc = flow(
        echo("a", {"n": 2}),
        echo("b", "${steps.a.output.n * 21}"),
        outputs={"answer": "${steps.b.output}", "status": "${steps.a.status}"},
    )
    result = run(settings, doc)
    assert result["status"] == "completed"
    assert result["output"] == {"answer": 42, "status": "completed"}
    assert result["error"] is None
    assert result["run_id"]


def test_set_if_switch(settings: EngineSettings) -> None:
    """`set` writes vars, `if` and `switch` pick their branch from expressions."""
    doc = flow(
        {"id": "s", "type": "set", "values": {"x": "${inputs.x}", "tag": "none"}},
        {
            "id": "branch",
            "type": "if",
            "condition": "${vars.x > 5}",
            "then": [{"id": "big", "type": "set", "values": {"tag": "big"}}],
            "else": [{"id": "small", "type": "set", "values": {"tag": "small"}}],
        },
        {
            "id": "sw",
            "type": "switch",
            "value": "${vars.tag}",
            "cases": [
                {"equals": "big", "steps": [echo("e_big", "B")]},
                {"equals": "small", "steps": [echo("e_small", "S")]},
            ],
            "default": [echo("e_default", "D")],
        },
        outputs={
            "tag": "${vars.tag}",
            "sw": "${steps.sw.output}",
            "skipped": "${steps.big.status}",
        },
    )
    result = run(settings, doc, {"x": 3})
    assert result["output"] == {"tag": "small", "sw": "S", "skipped": "pending"}


def test_when_skips_a_step(settings: EngineSettings) -> None:
    """A step whose `when` is false is recorded as skipped and does not run."""
    doc = flow(echo("a", 1, when="${false}"), outputs={"a": "${steps.a.status}"})
    assert run(settings, doc)["output"] == {"a": "skipped"}


def test_foreach_with_concurrency_keeps_order(settings: EngineSettings) -> None:
    """`foreach` yields each iteration's last output in item order, also when concurrent."""
    doc = flow(
        {
            "id": "loop",
            "type": "foreach",
            "items": "${inputs.items}",
            "as": "it",
            "concurrency": 3,
            "steps": [
                echo("double", "${it * 2}"),
                echo("tagged", "${string(index) + ':' + string(steps.double.output)}"),
            ],
        },
        outputs={"out": "${steps.loop.output}"},
    )
    result = run(settings, doc, {"items": [1, 2, 3, 4, 5]})
    assert result["output"]["out"] == ["0:2", "1:4", "2:6", "3:8", "4:10"]


def test_while_runs_until_condition(settings: EngineSettings) -> None:
    """`while` repeats its body until the condition is false."""
    doc = flow(
        {"id": "init", "type": "set", "values": {"i": 0}},
        {
            "id": "loop",
            "type": "while",
            "condition": "${vars.i < 4}",
            "max_iterations": 10,
            "steps": [{"id": "inc", "type": "set", "values": {"i": "${vars.i + 1}"}}],
        },
        outputs={"i": "${vars.i}"},
    )
    assert run(settings, doc)["output"] == {"i": 4}


def test_while_bound_fails_the_run(settings: EngineSettings) -> None:
    """A `while` that reaches max_iterations fails with a LoopLimit error."""
    doc = flow(
        {
            "id": "loop",
            "type": "while",
            "condition": "${true}",
            "max_iterations": 3,
            "steps": [{"id": "noop", "type": "set", "values": {"x": 1}}],
        }
    )
    result = run(settings, doc)
    assert result["status"] == "failed"
    assert result["error"]["type"] == "LoopLimit"
    assert result["error"]["step"] == "loop"


def test_parallel_branches(settings: EngineSettings) -> None:
    """`parallel` runs every branch and returns each branch's last output."""
    doc = flow(
        {
            "id": "par",
            "type": "parallel",
            "branches": [[echo("a", 1)], [echo("b", 2), echo("c", 3)]],
        },
        outputs={"par": "${steps.par.output}"},
    )
    assert run(settings, doc)["output"] == {"par": [1, 3]}


def test_try_catch_finally(settings: EngineSettings) -> None:
    """`catch` sees the error, and `finally` runs after it."""
    doc = flow(
        {
            "id": "t",
            "type": "try",
            "steps": [{"id": "boom", "type": "fail", "message": "bad ${inputs.what}"}],
            "catch": [
                {
                    "id": "caught",
                    "type": "set",
                    "values": {"msg": "${error.message}", "at": "${error.step}"},
                }
            ],
            "finally": [{"id": "fin", "type": "set", "values": {"cleaned": True}}],
        },
        outputs={"msg": "${vars.msg}", "at": "${vars.at}", "cleaned": "${vars.cleaned}"},
    )
    assert run(settings, doc, {"what": "thing"})["output"] == {
        "msg": "bad thing",
        "at": "boom",
        "cleaned": True,
    }


def test_fail_step_fails_the_run(settings: EngineSettings) -> None:
    """A `fail` step ends the run failed with its rendered message."""
    result = run(
        settings, flow({"id": "stop", "type": "fail", "message": "no ${inputs.x}"}), {"x": "way"}
    )
    assert result["status"] == "failed"
    assert result["error"] == {"message": "no way", "type": "Fail", "step": "stop"}
    assert result["output"] is None


def test_succeed_stops_early_and_evaluates_outputs(settings: EngineSettings) -> None:
    """`succeed` ends the run completed; later steps do not run."""
    doc = flow(
        {"id": "s", "type": "set", "values": {"x": 1}},
        {"id": "done", "type": "succeed"},
        {"id": "never", "type": "set", "values": {"x": 2}},
        outputs={"x": "${vars.x}", "never": "${steps.never.status}"},
    )
    result = run(settings, doc)
    assert result["status"] == "completed"
    assert result["output"] == {"x": 1, "never": "pending"}


def test_on_error_continue_records_the_error(settings: EngineSettings) -> None:
    """With on_error continue a failed step's error becomes its output and the run goes on."""
    doc = flow(
        {"id": "bad", "type": "fail", "message": "nope", "on_error": "continue"},
        outputs={"status": "${steps.bad.status}", "msg": "${steps.bad.output.error.message}"},
    )
    assert run(settings, doc)["output"] == {"status": "failed", "msg": "nope"}


def test_wait_is_a_durable_timer(settings: EngineSettings) -> None:
    """`wait` with a duration completes after the timer fires."""
    doc = flow(
        {"id": "w", "type": "wait", "duration": "100ms"},
        echo("after", "ok"),
        outputs={"after": "${steps.after.output}"},
    )
    assert run(settings, doc)["output"] == {"after": "ok"}


def test_call_runs_a_child_flow(settings: EngineSettings) -> None:
    """`call` runs the pinned child flow and its outputs become the step output."""
    child = flow(echo("e", "${inputs.n + 1}"), name="child", outputs={"n": "${steps.e.output}"})
    doc = flow(
        {"id": "c", "type": "call", "flow": "child", "inputs": {"n": 41}},
        outputs={"n": "${steps.c.output.n}"},
    )
    assert run(settings, doc, library={"child": child})["output"] == {"n": 42}


def test_expression_error_fails_with_pointer(settings: EngineSettings) -> None:
    """A runtime expression error fails the step and names the expression's pointer."""
    doc = flow(echo("a", "${inputs.missing.deep}"))
    result = run(settings, doc, {})
    assert result["status"] == "failed"
    assert result["error"]["type"] == "ExpressionError"
    assert "/steps/0/with" in result["error"]["message"]


def test_check_failure_is_retried_then_fails(settings: EngineSettings, http_server) -> None:
    """A `check` that does not hold fails the attempt with 'post-condition failed' and is retried."""
    step = {
        "id": "get",
        "type": "action",
        "action": "http.request",
        "with": {"url": f"{http_server.url}/thing"},
        "check": "${output.status == inputs.want}",
        "retry": {"max_attempts": 2, "backoff": "10ms"},
    }
    result = run(settings, flow(step), {"want": 201})
    assert result["status"] == "failed"
    assert result["error"]["type"] == "PostConditionFailed"
    assert "post-condition failed" in result["error"]["message"]
    assert len(http_server.requests) == 2


def test_check_that_holds_passes(settings: EngineSettings, http_server) -> None:
    """A `check` over the output and the inputs that holds lets the step complete."""
    step = {
        "id": "get",
        "type": "action",
        "action": "http.request",
        "with": {"url": f"{http_server.url}/thing"},
        "check": "${output.status == inputs.want && size(output.json.items) > 0}",
    }
    result = run(settings, flow(step, outputs={"s": "${steps.get.output.status}"}), {"want": 200})
    assert result["output"] == {"s": 200}


def test_http_retries_reuse_the_idempotency_key(settings: EngineSettings, http_server) -> None:
    """A 503 answer is retried and every attempt carries the same idempotency key."""
    http_server.fail_first["/flaky"] = 2
    step = {
        "id": "call",
        "type": "action",
        "action": "http.request",
        "with": {"url": f"{http_server.url}/flaky", "expect": [200]},
        "retry": {"max_attempts": 5, "backoff": "10ms"},
    }
    result = run(
        settings,
        flow(step, outputs={"key": "${steps.call.output.json.idempotency_key}"}),
        run_id="flaky-run-1",
    )
    assert result["status"] == "completed"
    assert result["output"] == {"key": "flaky-run-1/call/0"}


def test_large_output_travels_by_reference(settings: EngineSettings) -> None:
    """An action output over 64 KiB becomes an artifact reference stored in the data directory."""
    from amosflow.engine.activities import ArtifactStore

    big = "x" * (70 * 1024)
    result = run(settings, flow(echo("big", big), outputs={"ref": "${steps.big.output}"}))
    ref = result["output"]["ref"]
    assert ref["$ref"].startswith("artifact://sha256/")
    assert ref["size"] > 64 * 1024
    assert ArtifactStore(settings.artifacts_dir).get_json(ref) == big


def test_progress_query_reports_each_step(settings: EngineSettings) -> None:
    """The progress query returns status, attempt and timing for every step that ran."""
    import asyncio

    from amosflow.engine.client import RunRequest, connect, progress, result_of, start_run
    from amosflow.engine.worker import build_worker

    doc = flow(
        echo("a", 1),
        {"id": "w", "type": "wait", "duration": "10ms"},
        echo("skip", 2, when="${false}"),
    )

    async def go() -> dict:
        client = await connect(str(settings.temporal_address))
        async with build_worker(client, settings):
            handle = await start_run(
                client, RunRequest(flow=doc, inputs={}, library={}), task_queue=settings.task_queue
            )
            await result_of(handle)
            return await progress(handle)

    steps = asyncio.run(go())
    assert steps["a"]["status"] == "completed"
    assert steps["a"]["attempt"] == 1
    assert steps["a"]["started_at"] <= steps["a"]["ended_at"]
    assert steps["w"]["status"] == "completed"
    assert steps["skip"]["status"] == "skipped"


def test_a_run_started_beside_its_worker_begins_eagerly_and_a_delayed_one_does_not(
    settings: EngineSettings,
) -> None:
    """With a worker on the starting client (the single node), a start carries its first task.

    The SDK records whether the server answered the start with the first workflow task; a
    delayed start cannot, and is started the ordinary way.
    """
    import asyncio
    from datetime import timedelta

    from amosflow.engine.client import RunRequest, connect, result_of, start_run
    from amosflow.engine.worker import build_worker

    async def go() -> tuple[bool, bool, str]:
        client = await connect(str(settings.temporal_address))
        async with build_worker(client, settings):
            now = await start_run(
                client,
                RunRequest(flow=flow(echo("a", 1)), inputs={}, library={}),
                task_queue=settings.task_queue,
            )
            later = await start_run(
                client,
                RunRequest(flow=flow(echo("b", 2)), inputs={}, library={}),
                task_queue=settings.task_queue,
                start_delay=timedelta(milliseconds=10),
            )
            await result_of(later)
            outcome = await result_of(now)
        # The SDK's own record of the start's answer (no public accessor in temporalio 1.35).
        eager = "__temporal_eagerly_started"
        return getattr(now, eager), getattr(later, eager), outcome["status"]

    assert asyncio.run(go()) == (True, False, "completed")
