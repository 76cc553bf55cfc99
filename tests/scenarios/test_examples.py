"""Every example flow validates and runs to its end on a real worker, against a real server."""

from __future__ import annotations

import asyncio
import json
import typing
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory

from amosflow import humantasks as task_service
from amosflow.config import EngineSettings
from amosflow.dsl import ActionStep, Step, iter_steps, load_flow_text
from amosflow.engine.client import connect
from tests.scenarios.examples import (
    INPUTS,
    NEEDS_APPROVAL,
    SECRET_ENV,
    example_paths,
    load_example,
    run_example,
)
from tests.support.history import history_text, payloads
from tests.support.httpserver import LoopbackServer
from tests.support.tasks import control_plane, person

# The step types DSL.md lists, in its order.
DSL_STEP_TYPES = ("action", "set", "if", "switch", "foreach", "while", "parallel", "try", "wait")
DSL_STEP_TYPES += ("human", "call", "fail", "succeed")

temporal = pytest.mark.temporal  # for the tests that need the shared Temporal server


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
        p["output"]
        for p in payloads(history)
        if isinstance(p, dict) and set(p) == {"output", "attempt"}
    ]


@pytest.mark.parametrize("path", example_paths(), ids=lambda p: p.stem)
def test_example_validates(path: Path) -> None:
    """Each file in examples/ is a valid amos.flow/v1 document named after its file."""
    flow = load_flow_text(path.read_text(encoding="utf-8"), str(path))
    assert flow.name == path.stem


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


# What the main path of each example (inputs in tests/scenarios/examples.py) must produce.
Check = Callable[[dict[str, Any], LoopbackServer, WorkflowHistory, str], None]


def check_hello(result: dict[str, Any], server: LoopbackServer, *_: Any) -> None:
    """hello greets its input and needs no server at all."""
    assert result["output"] == {"greeting": "Hello, Ada!", "long_name": False}
    assert server.requests == []


def check_send_welcome(result: dict[str, Any], server: LoopbackServer, *_: Any) -> None:
    """send-welcome posts the mail and reports it as sent."""
    assert result["output"] == {"sent": True}
    assert bodies(server, "POST", "/mail") == [{"to": "ada@example.com", "template": "welcome"}]


def check_customer_onboarding(
    result: dict[str, Any], server: LoopbackServer, history: WorkflowHistory, _secret: str
) -> None:
    """Onboarding creates the account, the send-welcome child mails it, and the try audits."""
    assert result["output"] == {"account": "ada@example.com", "welcome": True, "audited": True}
    assert requested(server) == [("POST", "/accounts"), ("POST", "/mail")]
    assert bodies(server, "POST", "/accounts") == [{"email": "ada@example.com", "plan": "pro"}]
    assert bodies(server, "POST", "/mail") == [{"to": "ada@example.com", "template": "welcome"}]
    events = json.loads(history.to_json())["events"]
    kinds = [e["eventType"] for e in events]
    assert kinds.count("EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED") == 1
    mail_key = server.requests[1].headers["idempotency-key"]
    assert mail_key.startswith(result["run_id"] + "/welcome/")  # sent by the child run


def check_expense_claim(result: dict[str, Any], server: LoopbackServer, *_: Any) -> None:
    """A claim within the limit skips the manager, is auto-approved and paid."""
    assert result["output"] == {"decision": "auto-approved", "paid": True}
    assert bodies(server, "POST", "/payments") == [{"employee": "e-17", "amount": 42.5}]


def check_invoice_posting(
    result: dict[str, Any], server: LoopbackServer, history: WorkflowHistory, secret: str
) -> None:
    """Two invoices go to the ERP with the bearer secret; the echoed secret is masked."""
    assert result["output"] == {"posted": 2, "total": 139.0, "erp_statuses": [200, 200]}
    assert requested(server)[0] == ("GET", "/invoices?state=open")
    posts = [r for r in server.requests if r.path == "/erp/invoices"]
    assert len(posts) == 2
    assert {r.headers["authorization"] for r in posts} == {f"Bearer {secret}"}
    assert len({r.headers["idempotency-key"] for r in posts}) == 2
    assert sorted(bodies(server, "POST", "/erp/invoices"), key=lambda b: b["line"]) == [
        {"sku": "A-1", "amount": 19.0, "line": 0},
        {"sku": "B-7", "amount": 120.0, "line": 1},
    ]
    # The server echoes the Authorization header it got; the history holds it masked.
    echoed = [o["json"]["authorization"] for o in action_outputs(history) if "json" in o]
    assert echoed.count("Bearer ***") == 2


def check_job_polling(result: dict[str, Any], server: LoopbackServer, *_: Any) -> None:
    """The job is started once and polled with durable waits until the server says done."""
    assert result["output"] == {"state": "done", "polls": server.polls_until_done}
    assert requested(server) == [("POST", "/jobs")] + [("GET", "/jobs/42")] * 3
    assert bodies(server, "POST", "/jobs") == [{"report": "monthly"}]
    poll_keys = [r.headers["idempotency-key"] for r in server.requests[1:]]
    assert len(set(poll_keys)) == 3  # one key per iteration


def check_order_fulfilment(
    result: dict[str, Any], server: LoopbackServer, history: WorkflowHistory, _secret: str
) -> None:
    """A web order reserves stock and notifies the warehouse in parallel, then ships standard."""
    assert result["output"] == {"route": "warehouse", "express": False}
    assert sorted(requested(server)) == [("POST", "/stock/reserve"), ("POST", "/warehouse/notify")]
    assert bodies(server, "POST", "/stock/reserve") == [{"order": "o-1001"}]
    assert bodies(server, "POST", "/warehouse/notify") == [{"order": "o-1001"}]
    assert "standard shipping" in action_outputs(history)


def check_invoice_approval(result: dict[str, Any], server: LoopbackServer, *_: Any) -> None:
    """An invoice within the limit needs no approval and is posted as it is."""
    assert result["output"] == {"amount": 250.0, "approval": "not needed", "posted": True}
    assert bodies(server, "POST", "/erp/invoices") == [{"invoice": "INV-7", "amount": 250.0}]


CHECKS: dict[str, Check] = {
    "hello": check_hello,
    "send-welcome": check_send_welcome,
    "customer-onboarding": check_customer_onboarding,
    "expense-claim": check_expense_claim,
    "invoice-approval": check_invoice_approval,
    "invoice-posting": check_invoice_posting,
    "job-polling": check_job_polling,
    "order-fulfilment": check_order_fulfilment,
}


def test_every_example_has_a_scenario() -> None:
    """Each example has realistic inputs and expectations, so it is run and checked here."""
    names = {p.stem for p in example_paths()}
    assert names == set(INPUTS)
    assert names == set(CHECKS)


@temporal
@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example_main_path(
    name: str,
    settings: EngineSettings,
    http_server: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each example's main path completes with the outputs and requests it is written for."""
    secret = "canary-" + uuid.uuid4().hex
    monkeypatch.setenv(SECRET_ENV, secret)
    result, history = run(settings, name, INPUTS[name](http_server.url))
    assert result["status"] == "completed", result
    assert result["error"] is None
    CHECKS[name](result, http_server, history, secret)
    assert secret not in history_text(history)


@temporal
def test_hello_defaults_and_long_names(settings: EngineSettings) -> None:
    """hello defaults to `world` and flags names longer than ten characters."""
    assert run(settings, "hello", {})[0]["output"] == {
        "greeting": "Hello, world!",
        "long_name": False,
    }
    long_name = run(settings, "hello", {"who": "Bartholomew the Great"})[0]["output"]
    assert long_name == {"greeting": "Hello, Bartholomew the Great!", "long_name": True}


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
def test_job_polling_gives_up_after_max_polls(
    settings: EngineSettings, http_server: LoopbackServer
) -> None:
    """A job still running after max_polls fails the run with the poll count."""
    result, _ = run(settings, "job-polling", {"api": http_server.url, "max_polls": 1})
    assert result["status"] == "failed"
    assert result["error"]["message"] == "job still running after 1 polls"
    assert result["error"]["step"] == "gave_up"


@temporal
def test_invoice_approval_above_the_limit_waits_for_an_approver(
    settings: EngineSettings, http_server: LoopbackServer, tmp_path: Path
) -> None:
    """Above the limit the run waits on the approval task and posts once it is approved."""

    async def main() -> dict[str, Any]:
        async with control_plane(settings, tmp_path) as plane:
            run_id = await plane.start(
                load_example("invoice-approval"),
                NEEDS_APPROVAL["invoice-approval"](http_server.url),
                run_id="inv-1",
            )
            task = await plane.task_of(run_id, "approve")
            assert task.title == "Approve invoice INV-9 from Acme for 5000"
            assert http_server.requests == []
            decision = task_service.Decision(outcome="approved", comment="ok")
            await task_service.decide(plane.cp, person("alice"), task.id, decision)
            return await plane.result(run_id)

    result = asyncio.run(main())
    assert result["output"] == {"amount": 5000, "approval": "approved", "posted": True}
    assert bodies(http_server, "POST", "/erp/invoices") == [{"invoice": "INV-9", "amount": 5000}]


@temporal
def test_invoice_approval_rejected_is_corrected_through_the_form(
    settings: EngineSettings, http_server: LoopbackServer, tmp_path: Path
) -> None:
    """A rejected invoice asks for a corrected amount in a form, then posts that amount."""

    async def main() -> dict[str, Any]:
        async with control_plane(settings, tmp_path) as plane:
            run_id = await plane.start(
                load_example("invoice-approval"),
                NEEDS_APPROVAL["invoice-approval"](http_server.url),
                run_id="inv-2",
            )
            approve = await plane.task_of(run_id, "approve")
            rejected = task_service.Decision(outcome="rejected", comment="amount is wrong")
            await task_service.decide(plane.cp, person("alice"), approve.id, rejected)
            correct = await plane.task_of(run_id, "correct")
            assert correct.kind == "form"
            data = {"amount": 4500, "reason": "duplicate line"}
            submitted = task_service.Decision(outcome="submitted", data=data)
            await task_service.decide(plane.cp, person("bob"), correct.id, submitted)
            return await plane.result(run_id)

    result = asyncio.run(main())
    assert result["output"] == {"amount": 4500, "approval": "corrected", "posted": True}
    assert bodies(http_server, "POST", "/erp/invoices") == [{"invoice": "INV-9", "amount": 4500}]
