"""Human steps on a real Temporal server: decisions through the update, four-eyes, SLA breaches."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from amosflow import humantasks as task_service
from amosflow import identity
from amosflow.config import EngineSettings, NotifySettings
from amosflow.engine.types import DECIDE_UPDATE, TaskDecision
from amosflow.errors import FourEyesError, TaskClosedError, ValidationFailedError
from amosflow.identity import IdentitySettings
from amosflow.services import diff
from amosflow.store import AuditRow
from tests.support.httpserver import LoopbackServer
from tests.support.tasks import Plane, control_plane, person

pytestmark = [pytest.mark.temporal]
ALICE, BOB = person("alice"), person("bob")
STARTER = person("starter")


def human_flow(**human: Any) -> dict[str, Any]:
    """A flow with one human step `ask` whose output becomes the run's output."""
    step = {"id": "ask", "type": "human", "task": "approval", "title": "Approve the order"}
    step |= {"assignees": ["role:approver"], **human}
    return {
        "dsl": "amos.flow/v1",
        "name": "asks",
        "inputs": {"type": "object", "properties": {"n": {"type": "integer"}}},
        "outputs": {"answer": "${steps.ask.output}"},
        "steps": [step],
    }


def run_id() -> str:
    return f"asks-{uuid.uuid4().hex[:10]}"


def decide(plane: Plane, who: Any, task_id: str, outcome: str, **extra: Any) -> Any:
    return task_service.decide(
        plane.cp, who, task_id, task_service.Decision(outcome=outcome, **extra)
    )


def test_an_approval_waits_and_its_decision_is_the_output(
    settings: EngineSettings, tmp_path: Path
) -> None:
    """The run waits (progress `waiting`, an open inbox row) until an approver approves."""

    async def main() -> None:
        async with control_plane(settings, tmp_path) as plane:
            flow = human_flow(title="Approve order ${inputs.n}")
            rid = await plane.start(flow, {"n": 7}, run_id=run_id())
            task = await plane.task_of(rid, "ask")
            assert task.title == "Approve order 7"
            assert task.started_by == "user:starter"
            assert (await plane.progress(rid))["ask"]["status"] == "waiting"
            closed = await decide(
                plane, ALICE, task.id, "approved", comment="fine", channel="console"
            )
            assert closed.status == "decided"
            result = await plane.result(rid)
            answer = result["output"]["answer"]
            assert answer["outcome"] == "approved"
            assert (answer["comment"], answer["by"], answer["data"]) == ("fine", "user:alice", None)
            assert closed.decision == answer
            with plane.store.session(read_only=True) as session:
                rows = session.query(AuditRow).filter(AuditRow.action == "tasks.decide").all()
            assert [(r.actor, r.details["channel"]) for r in rows] == [("user:alice", "console")]

    asyncio.run(main())


def test_a_rejection_is_the_output(settings: EngineSettings, tmp_path: Path) -> None:
    """A rejected approval completes the step with outcome `rejected`."""

    async def main() -> None:
        async with control_plane(settings, tmp_path) as plane:
            rid = await plane.start(human_flow(), run_id=run_id())
            task = await plane.task_of(rid, "ask")
            await decide(plane, BOB, task.id, "rejected", comment="no")
            assert (await plane.result(rid))["output"]["answer"]["outcome"] == "rejected"

    asyncio.run(main())


def test_a_form_is_validated_on_submit(settings: EngineSettings, tmp_path: Path) -> None:
    """Form data that breaks the schema is refused with pointers; valid data is the output."""
    form = {
        "type": "object",
        "properties": {"amount": {"type": "number", "minimum": 0}, "reason": {"type": "string"}},
        "required": ["amount", "reason"],
    }

    async def main() -> None:
        async with control_plane(settings, tmp_path) as plane:
            flow = human_flow(task="form", form=form)
            rid = await plane.start(flow, run_id=run_id())
            task = await plane.task_of(rid, "ask")
            with pytest.raises(ValidationFailedError) as bad:
                await decide(plane, ALICE, task.id, "submitted", data={"amount": -1})
            pointers = {d.pointer for d in bad.value.diagnostics}
            assert pointers == {"/data", "/data/amount"}
            with pytest.raises(ValidationFailedError):
                await decide(plane, ALICE, task.id, "approved", data={"amount": 1, "reason": "x"})
            data = {"amount": 12.5, "reason": "typo"}
            await decide(plane, ALICE, task.id, "submitted", data=data)
            answer = (await plane.result(rid))["output"]["answer"]
            assert (answer["outcome"], answer["data"]) == ("submitted", data)

    asyncio.run(main())


def test_the_starter_cannot_decide_its_own_run(settings: EngineSettings, tmp_path: Path) -> None:
    """Four-eyes: the API and the workflow's validator both refuse the run's starter."""

    async def main() -> None:
        async with control_plane(settings, tmp_path) as plane:
            rid = await plane.start(human_flow(), run_id=run_id())
            task = await plane.task_of(rid, "ask")
            with pytest.raises(FourEyesError):
                await decide(plane, STARTER, task.id, "approved")
            handle = plane.client.get_workflow_handle(rid)
            direct = TaskDecision(task_id=task.id, outcome="approved", by="user:starter")
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(DECIDE_UPDATE, direct)
            assert isinstance(refused.value.cause, ApplicationError)
            assert refused.value.cause.type == "FourEyes"
            await decide(plane, ALICE, task.id, "approved")
            assert (await plane.result(rid))["output"]["answer"]["by"] == "user:alice"

    asyncio.run(main())


def test_two_decisions_at_once_exactly_one_wins(settings: EngineSettings, tmp_path: Path) -> None:
    """Two approvers deciding at the same moment: one decision stands, the other is a conflict."""

    async def main() -> None:
        async with control_plane(settings, tmp_path) as plane:
            rid = await plane.start(human_flow(), run_id=run_id())
            task = await plane.task_of(rid, "ask")
            outcomes = await asyncio.gather(
                decide(plane, ALICE, task.id, "approved"),
                decide(plane, BOB, task.id, "rejected"),
                return_exceptions=True,
            )
            won = [o for o in outcomes if not isinstance(o, BaseException)]
            lost = [o for o in outcomes if isinstance(o, BaseException)]
            assert len(won) == 1
            assert len(lost) == 1
            assert isinstance(lost[0], TaskClosedError), lost
            answer = (await plane.result(rid))["output"]["answer"]
            assert answer == won[0].decision

    asyncio.run(main())


def test_a_decision_after_the_run_ended_is_refused(
    settings: EngineSettings, tmp_path: Path
) -> None:
    """A run that ended while its task was open refuses the decision as a conflict."""

    async def main() -> None:
        async with control_plane(settings, tmp_path) as plane:
            rid = await plane.start(human_flow(), run_id=run_id())
            task = await plane.task_of(rid, "ask")
            await plane.client.get_workflow_handle(rid).terminate("gone")
            with pytest.raises(TaskClosedError, match="ended"):
                await decide(plane, ALICE, task.id, "approved")

    asyncio.run(main())


def test_a_cancelled_run_cancels_its_task(settings: EngineSettings, tmp_path: Path) -> None:
    """Cancelling a waiting run closes its task as `cancelled`; deciding it is a conflict."""

    async def main() -> None:
        async with control_plane(settings, tmp_path) as plane:
            rid = await plane.start(human_flow(), run_id=run_id())
            task = await plane.task_of(rid, "ask")
            await plane.client.get_workflow_handle(rid).cancel()
            await plane.task_of(rid, "ask", status="cancelled")
            with pytest.raises(TaskClosedError):
                await decide(plane, ALICE, task.id, "approved")

    asyncio.run(main())


@pytest.mark.parametrize(
    ("on_timeout", "outcome"), [("approve", "approved"), ("reject", "rejected")]
)
def test_on_timeout_decides_after_the_sla(
    settings: EngineSettings, tmp_path: Path, on_timeout: str, outcome: str
) -> None:
    """`approve`/`reject` decide as `system` once the SLA passes undecided."""

    async def main() -> None:
        async with control_plane(settings, tmp_path) as plane:
            rid = await plane.start(human_flow(sla="1s", on_timeout=on_timeout), run_id=run_id())
            answer = (await plane.result(rid))["output"]["answer"]
            assert (answer["outcome"], answer["by"]) == (outcome, "system")
            task = await plane.task_of(rid, "ask", status="decided")
            assert task.decision == answer

    asyncio.run(main())


def test_on_timeout_fail_fails_the_step(settings: EngineSettings, tmp_path: Path) -> None:
    """`fail` ends the step as a Timeout and the task as `expired`."""

    async def main() -> None:
        async with control_plane(settings, tmp_path) as plane:
            rid = await plane.start(human_flow(sla="1s"), run_id=run_id())
            result = await plane.result(rid)
            assert result["status"] == "failed"
            assert (result["error"]["type"], result["error"]["step"]) == ("Timeout", "ask")
            await plane.task_of(rid, "ask", status="expired")

    asyncio.run(main())


def test_a_breach_escalates_then_applies_on_timeout(
    settings: EngineSettings, tmp_path: Path
) -> None:
    """With `escalate_to`, a breach widens the assignees; one more SLA later, on_timeout applies."""

    async def main() -> None:
        async with control_plane(settings, tmp_path) as plane:
            flow = human_flow(sla="2s", escalate_to=["group:leads"], on_timeout="reject")
            rid = await plane.start(flow, run_id=run_id())
            deadline = asyncio.get_running_loop().time() + 30
            while not (await plane.task_of(rid, "ask")).escalated:
                assert asyncio.get_running_loop().time() < deadline, "never escalated"
                await asyncio.sleep(0.1)  # polling the inbox row for the escalation
            task = await plane.task_of(rid, "ask")
            assert task.assignees == ["role:approver", "group:leads"]
            answer = (await plane.result(rid))["output"]["answer"]
            assert (answer["outcome"], answer["by"]) == ("rejected", "system")

    asyncio.run(main())


def test_escalate_keeps_waiting_for_the_wider_audience(
    settings: EngineSettings, tmp_path: Path
) -> None:
    """`escalate` marks the task escalated and waits; a lead in the group then decides it."""
    lead = person("lea", role="analyst", groups=("leads",))

    async def main() -> None:
        async with control_plane(settings, tmp_path) as plane:
            flow = human_flow(sla="1s", escalate_to=["group:leads"], on_timeout="escalate")
            flow["steps"][0]["assignees"] = ["user:nobody"]
            rid = await plane.start(flow, run_id=run_id())
            deadline = asyncio.get_running_loop().time() + 30
            while not (task := await plane.task_of(rid, "ask")).escalated:
                assert asyncio.get_running_loop().time() < deadline, "never escalated"
                await asyncio.sleep(0.1)  # polling the inbox row for the escalation
            assert task_service.is_assignee(lead, task)
            approver = person("apa", role="administrator", groups=("leads",))
            await decide(plane, approver, task.id, "approved")
            assert (await plane.result(rid))["output"]["answer"]["by"] == "user:apa"

    asyncio.run(main())


class Mailbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 2.0.0 queued"


def test_new_and_escalated_tasks_are_mailed_and_posted(
    settings: EngineSettings,
    tmp_path: Path,
    http_server: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Assignees get a mail, Slack and Teams a post, each with the console link and no way to decide."""
    mailbox = Mailbox()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    connection = {"host": "127.0.0.1", "port": port, "from": "AMOS <flows@example.org>"}
    monkeypatch.setenv("AMOS_SMTP_CONNECTIONS", json.dumps({"local": connection}))
    notify = NotifySettings(
        public_url="https://amos.example.org/",
        smtp_connection="local",
        email_to="ops@example.org",
        slack_webhook_url=SecretStr(f"{http_server.url}/slack/T0/B0/secret-token"),
        teams_webhook_url=SecretStr(f"{http_server.url}/teams"),
    )

    async def main() -> None:
        async with control_plane(settings, tmp_path, notify) as plane:
            with plane.store.session() as session:
                user = identity.create_user(
                    session,
                    username="alice",
                    password=None,
                    email="alice@example.org",
                    settings=IdentitySettings(home=settings.home),
                )
                identity.grant(session, subject_kind="principal", subject=user.id, role="approver")
            flow = human_flow(sla="1s", escalate_to=["group:leads"], on_timeout="escalate")
            rid = await plane.start(flow, run_id=run_id())
            deadline = asyncio.get_running_loop().time() + 30
            while len(http_server.requests) < 4 or len(mailbox.messages) < 2:
                assert asyncio.get_running_loop().time() < deadline, "notifications missing"
                await asyncio.sleep(0.1)  # polling the peers for what the activity sent
            task = await plane.task_of(rid, "ask")
            await decide(plane, ALICE, task.id, "approved")
            await plane.result(rid)
            return task.id

    try:
        task_id = asyncio.run(main())
    finally:
        controller.stop()
    link = f"https://amos.example.org/#/tasks/{task_id}"
    subjects = [m["Subject"] for _, m in mailbox.messages]
    assert subjects == [
        "[AMOS FLOW] New task: Approve the order",
        "[AMOS FLOW] Escalated task: Approve the order",
    ]
    for recipients, message in mailbox.messages:
        assert recipients == ["alice@example.org", "ops@example.org"]
        body = message.get_content()
        assert link in body
        assert "decide" not in body
    posts = [(r.path, json.loads(r.body)["text"]) for r in http_server.requests]
    assert sorted(path for path, _ in posts) == ["/slack/T0/B0/secret-token"] * 2 + ["/teams"] * 2
    assert all(text.endswith(link) for _, text in posts)


def test_a_waiting_step_is_announced_as_started_not_completed() -> None:
    """The run's event feed reports a waiting human step as started, and completed only at its end."""
    waiting = {"ask": {"status": "waiting", "runs": 1, "task_id": "t-1"}}
    events = diff({}, waiting, "r-1")
    assert [(e.kind, e.data["status"]) for e in events] == [("step.started", "waiting")]
    done = {"ask": {"status": "completed", "runs": 1}}
    assert [e.kind for e in diff(waiting, done, "r-1")] == ["step.completed"]
