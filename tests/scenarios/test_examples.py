"""Every example flow validates and runs to its end on a real worker, against a real server."""

from __future__ import annotations

import asyncio
import json
import typing
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory

from amosflow.config import EngineSettings
from amosflow.dsl import ActionStep, iter_steps, load_flow_text
from amosflow.dsl.models import Step
from amosflow.engine.client import connect
from tests.scenarios.examples import (
    INPUTS,
    SECRET_ENV,
    example_paths,
    history_text,
    payloads,
    run_example,
)
from tests.support.httpserver import LoopbackServer

# The step types DSL.md lists, in its order.
DSL_STEP_TYPES = (
    "action set if switch foreach while parallel try wait human call fail succeed".split()
)


def run(
    settings: EngineSettings, name: str, inputs: dict[str, Any]
) -> tuple[dict[str, Any], WorkflowHistory]:
    """Run one example on a worker of this test's task queue; return result and history."""

    async def main() -> tuple[dict[str, Any], WorkflowHistory]:
        assert settings.temporal_address is not None
        client = await connect(settings.temporal_address)
        return await run_example(client, settings, name, inputs)

    return asyncio.run(main())


def bodies(server: LoopbackServer, method: str, path: str) -> list[Any]:
    """The JSON bodies of the requests the server received for ``method path``."""
    return [json.loads(r.body) for r in server.requests if (r.method, r.path) == (method, path)]


def requested(server: LoopbackServer) -> list[tuple[str, str]]:
    """(method, path) of every recorded request, in arrival order."""
    return [(r.method, r.path) for r in server.requests]


def action_outputs(history: WorkflowHistory) -> list[Any]:
    """The outputs of every action the run performed, from the results in its history."""
    return [
        p["output"] for p in payloads(history) if isinstance(p, dict) and set(p) == {"output", "attempt"}
    ]


@pytest.mark.parametrize("path", example_paths(), ids=lambda p: p.stem)
def test_example_validates(path: Path) -> None:
    """Each file in examples/ is a valid amos.flow/v1 document named after its file."""
    flow = load_flow_text(path.read_text(encoding="utf-8"), str(path))
    assert flow.name == path.stem


def test_every_example_has_a_scenario() -> None:
    """Each example has realistic inputs here, so it is run (and its history recorded)."""
    assert {p.stem for p in example_paths()} == set(INPUTS)


def test_examples_cover_every_step_type() -> None:
    """Together the examples use every step type of DSL.md and the http.request action."""
    model_types = {
        cls.model_fields["type"].default for cls in typing.get_args(typing.get_args(Step)[0])
    }
    assert set(DSL_STEP_TYPES) == model_types, "DSL.md's list and the models disagree"
    used: set[str] = set()
    actions: set[str] = set()
    for path in example_paths():
        flow = load_flow_text(path.read_text(encoding="utf-8"), str(path))
        for _, step in iter_steps(flow.steps):
            used.add(step.type)
            if isinstance(step, ActionStep):
                actions.add(step.action)
    assert sorted(set(DSL_STEP_TYPES) - used) == []
    assert "http.request" in actions


temporal = pytest.mark.temporal  # the tests below need the shared Temporal server


@temporal
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_example_runs_to_completion(
    name: str,
    settings: EngineSettings,
    http_server: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each example's main path completes with its inputs and no error."""
    monkeypatch.setenv(SECRET_ENV, "s3cr3t-" + uuid.uuid4().hex)
    result, _ = run(settings, name, INPUTS[name](http_server.url))
    assert result["error"] is None
    assert result["status"] == "completed"


@temporal
def test_hello_greets_without_any_server(settings: EngineSettings) -> None:
    """hello needs no network: it greets the input, defaults to `world` and flags long names."""
    assert run(settings, "hello", {"who": "Ada"})[0]["output"] == {
        "greeting": "Hello, Ada!",
        "long_name": False,
    }
    assert run(settings, "hello", {})[0]["output"]["greeting"] == "Hello, world!"
    long_name = run(settings, "hello", {"who": "Bartholomew the Great"})[0]["output"]
    assert long_name == {"greeting": "Hello, Bartholomew the Great!", "long_name": True}


@temporal
def test_invoice_posting_posts_each_invoice_with_the_secret_out_of_history(
    settings: EngineSettings, http_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two invoices go to the ERP with the bearer secret, which never enters the history."""
    canary = "canary-" + uuid.uuid4().hex
    monkeypatch.setenv(SECRET_ENV, canary)
    result, history = run(settings, "invoice-posting", {"api": http_server.url})
    assert result["status"] == "completed", result
    assert result["output"] == {"posted": 2, "total": 139.0, "erp_statuses": [200, 200]}
    assert requested(http_server)[0] == ("GET", "/invoices?state=open")
    posts = [r for r in http_server.requests if r.path == "/erp/invoices"]
    assert len(posts) == 2
    assert {r.headers["authorization"] for r in posts} == {f"Bearer {canary}"}
    assert len({r.headers["idempotency-key"] for r in posts}) == 2
    assert sorted(bodies(http_server, "POST", "/erp/invoices"), key=lambda b: b["line"]) == [
        {"sku": "A-1", "amount": 19.0, "line": 0},
        {"sku": "B-7", "amount": 120.0, "line": 1},
    ]
    text = history_text(history)
    assert "erp/invoices" in text  # the history is the real one
    assert canary not in text


@temporal
def test_order_fulfilment_web_orders_fan_out(
    settings: EngineSettings, http_server: LoopbackServer
) -> None:
    """A web order reserves stock and notifies the warehouse, then ships standard."""
    inputs = {"api": http_server.url, "order": {"id": "o-7", "channel": "web"}}
    result, history = run(settings, "order-fulfilment", inputs)
    assert result["output"] == {"route": "warehouse", "express": False}
    assert sorted(requested(http_server)) == [
        ("POST", "/stock/reserve"),
        ("POST", "/warehouse/notify"),
    ]
    assert bodies(http_server, "POST", "/stock/reserve") == [{"order": "o-7"}]
    assert bodies(http_server, "POST", "/warehouse/notify") == [{"order": "o-7"}]
    assert "standard shipping" in action_outputs(history)


@temporal
def test_order_fulfilment_express_ends_early(
    settings: EngineSettings, http_server: LoopbackServer
) -> None:
    """An express store order succeeds at `succeed`: outputs are evaluated, shipping never runs."""
    inputs = {"api": http_server.url, "order": {"id": "o-8", "channel": "store", "express": True}}
    result, history = run(settings, "order-fulfilment", inputs)
    assert result["status"] == "completed"
    assert result["output"] == {"route": "pickup", "express": True}
    assert http_server.requests == []
    assert "standard shipping" not in action_outputs(history)


@temporal
def test_order_fulfilment_unsupported_channel_fails(
    settings: EngineSettings, http_server: LoopbackServer
) -> None:
    """A channel the schema allows but no case handles takes the `fail` default branch."""
    inputs = {"api": http_server.url, "order": {"id": "o-9", "channel": "phone"}}
    result, _ = run(settings, "order-fulfilment", inputs)
    assert result["status"] == "failed"
    assert result["output"] is None
    assert result["error"] == {
        "message": "channel phone is not supported yet",
        "type": "Fail",
        "step": "unsupported",
    }
    assert http_server.requests == []


@temporal
def test_customer_onboarding_runs_the_welcome_child_flow(
    settings: EngineSettings, http_server: LoopbackServer
) -> None:
    """Onboarding creates the account, the send-welcome child mails it, and the try audits."""
    inputs = {"api": http_server.url, "email": "ada@example.com", "plan": "pro"}
    result, history = run(settings, "customer-onboarding", inputs)
    assert result["output"] == {"account": "ada@example.com", "welcome": True, "audited": True}
    assert requested(http_server) == [("POST", "/accounts"), ("POST", "/mail")]
    assert bodies(http_server, "POST", "/accounts") == [{"email": "ada@example.com", "plan": "pro"}]
    assert bodies(http_server, "POST", "/mail") == [{"to": "ada@example.com", "template": "welcome"}]
    events = json.loads(history.to_json())["events"]
    children = [e for e in events if e["eventType"] == "EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED"]
    assert len(children) == 1
    mail_key = http_server.requests[1].headers["idempotency-key"]
    assert mail_key.startswith(result["run_id"] + "/welcome/")


@temporal
def test_customer_onboarding_defaults_the_plan(
    settings: EngineSettings, http_server: LoopbackServer
) -> None:
    """Without a plan the account is created on `basic`."""
    result, _ = run(settings, "customer-onboarding", {"api": http_server.url, "email": "b@x.io"})
    assert result["status"] == "completed"
    assert bodies(http_server, "POST", "/accounts") == [{"email": "b@x.io", "plan": "basic"}]


@temporal
def test_customer_onboarding_rejects_a_bad_email(
    settings: EngineSettings, http_server: LoopbackServer
) -> None:
    """A bad email fails the run with the `fail` step's message before any request."""
    result, _ = run(settings, "customer-onboarding", {"api": http_server.url, "email": "nobody"})
    assert result["status"] == "failed"
    assert result["error"]["message"] == "not an email address: nobody"
    assert result["error"]["step"] == "bad_email"
    assert http_server.requests == []


@temporal
def test_customer_onboarding_catch_explains_a_failed_create(
    settings: EngineSettings, http_server: LoopbackServer
) -> None:
    """When account creation keeps failing, `catch` fails the run naming the step, no mail."""
    http_server.fail_first["/accounts"] = 2  # both attempts of the step's retry policy
    result, _ = run(settings, "customer-onboarding", {"api": http_server.url, "email": "c@x.io"})
    assert result["status"] == "failed"
    assert result["error"]["step"] == "explain"
    assert result["error"]["message"].startswith("onboarding failed at create: ")
    assert "503" in result["error"]["message"]
    assert requested(http_server) == []


@temporal
def test_job_polling_polls_until_done(
    settings: EngineSettings, http_server: LoopbackServer
) -> None:
    """The job is started once and polled with durable waits until the server says done."""
    result, _ = run(settings, "job-polling", {"api": http_server.url, "max_polls": 10})
    assert result["output"] == {"state": "done", "polls": http_server.polls_until_done}
    assert requested(http_server) == [("POST", "/jobs")] + [("GET", "/jobs/42")] * 3
    assert bodies(http_server, "POST", "/jobs") == [{"report": "monthly"}]
    poll_keys = [r.headers["idempotency-key"] for r in http_server.requests[1:]]
    assert len(set(poll_keys)) == 3  # one key per iteration


@temporal
def test_job_polling_gives_up_after_max_polls(
    settings: EngineSettings, http_server: LoopbackServer
) -> None:
    """A job still running after max_polls fails the run with the poll count."""
    result, _ = run(settings, "job-polling", {"api": http_server.url, "max_polls": 2})
    assert result["status"] == "failed"
    assert result["error"]["message"] == "job still running after 2 polls"
    assert result["error"]["step"] == "gave_up"


@temporal
def test_expense_claim_below_the_limit_pays_without_a_human(
    settings: EngineSettings, http_server: LoopbackServer
) -> None:
    """A claim within the limit skips the manager, is auto-approved and paid."""
    inputs = {"api": http_server.url, "employee": "e-17", "amount": 42.5, "limit": 100}
    result, _ = run(settings, "expense-claim", inputs)
    assert result["output"] == {"decision": "auto-approved", "paid": True}
    assert bodies(http_server, "POST", "/payments") == [{"employee": "e-17", "amount": 42.5}]


@temporal
def test_send_welcome_runs_on_its_own(
    settings: EngineSettings, http_server: LoopbackServer
) -> None:
    """The child flow also runs as a top-level flow and reports the mail as sent."""
    result, _ = run(settings, "send-welcome", {"api": http_server.url, "email": "d@x.io"})
    assert result["output"] == {"sent": True}
    assert bodies(http_server, "POST", "/mail") == [{"to": "d@x.io", "template": "welcome"}]
