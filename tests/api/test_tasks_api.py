"""/api/v1/tasks on a real node: the inbox, claims, decisions, four-eyes, folders, events."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from amosflow.store import AuditRow, OutboxEntry, open_store
from tests.api.conftest import Node
from tests.api.flows_util import save, wait_for_end

pytestmark = [pytest.mark.temporal]
FORM = {
    "type": "object",
    "properties": {"amount": {"type": "number", "minimum": 0}},
    "required": ["amount"],
}


def human_doc(name: str = "ask", **human: Any) -> dict[str, Any]:
    """A flow whose one human step `ask` is its output."""
    step = {"id": "ask", "type": "human", "task": "approval", "title": "Approve it"}
    step |= {"assignees": ["role:approver"], **human}
    return {
        "dsl": "amos.flow/v1",
        "name": name,
        "outputs": {"answer": "${steps.ask.output}"},
        "steps": [step],
    }


def start(node: Node, document: dict[str, Any]) -> str:
    """Save the flow, start a run of it as the administrator, return the run id."""
    save(node.client, document)
    response = node.client.post("/api/v1/runs", json={"flow": document["name"], "inputs": {}})
    assert response.status_code == 201, response.text
    run_id: str = response.json()["run_id"]
    return run_id


def task_of(node: Node, run_id: str) -> dict[str, Any]:
    """Poll the inbox (all open tasks) until the run's task is there."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = node.client.get("/api/v1/tasks", params={"scope": "all"}).json()["items"]
        found = [t for t in items if t["run_id"] == run_id]
        if found:
            return found[0]
        time.sleep(0.1)  # polling the inbox for the row the run's activity writes
    raise AssertionError(f"no task for {run_id}")


def caller(
    node: Node, username: str, role: str | None = "approver", folder: str = "*"
) -> httpx.Client:
    """A client of a (new) user holding ``role`` in ``folder``."""
    return node.as_caller(node.token_for(username, role, folder))


def rows(node: Node, model: Any, *where: Any) -> list[Any]:
    """Rows of the node's store."""
    store = open_store(node.config.store_url)
    try:
        with store.session(read_only=True) as session:
            return list(session.scalars(select(model).where(*where)))
    finally:
        store.dispose()


def test_an_approver_decides_and_the_run_completes(node: Node) -> None:
    """The approver finds the task in its inbox, approves it from the console, the run ends."""
    run_id = start(node, human_doc())
    task = task_of(node, run_id)
    assert task["status"] == "open"
    assert task["console_url"] == f"/#/tasks/{task['id']}"
    assert (task["kind"], task["started_by"], task["decision"]) == ("approval", "user:admin", None)
    with caller(node, "ann") as ann:
        mine = ann.get("/api/v1/tasks").json()["items"]
        assert [t["id"] for t in mine] == [task["id"]]
        assert ann.get(f"/api/v1/tasks/{task['id']}").json()["id"] == task["id"]
        body = {"outcome": "approved", "comment": "looks right"}
        decided = ann.post(
            f"/api/v1/tasks/{task['id']}/decide", json=body, headers={"X-Amos-Channel": "console"}
        )
        assert decided.status_code == 200, decided.text
        assert decided.json()["status"] == "decided"
        assert decided.json()["decision"]["by"] == "user:ann"
        again = ann.post(f"/api/v1/tasks/{task['id']}/decide", json=body)
        assert again.status_code == 409
        assert ann.get("/api/v1/tasks").json()["items"] == []
        done = ann.get("/api/v1/tasks", params={"status": "decided"}).json()["items"]
        assert [t["id"] for t in done] == [task["id"]]
    run = wait_for_end(node.client, run_id)
    assert run["status"] == "completed"
    assert run["output"]["answer"]["outcome"] == "approved"
    audits = rows(node, AuditRow, AuditRow.action == "tasks.decide")
    assert [(a.actor, a.details["channel"]) for a in audits] == [("user:ann", "console")]
    subjects = {e.subject for e in rows(node, OutboxEntry)}
    assert {f"amos.task.{task['id']}.created", f"amos.task.{task['id']}.decided"} <= subjects


def test_four_eyes_and_non_assignees_are_forbidden(node: Node) -> None:
    """The starter may not decide its own run; nor may someone the task is not assigned to."""
    run_id = start(node, human_doc())
    task = task_of(node, run_id)
    url = f"/api/v1/tasks/{task['id']}/decide"
    own = node.client.post(url, json={"outcome": "approved"})
    assert own.status_code == 403
    assert own.json()["code"] == "amos.task.four_eyes"
    with caller(node, "dora", "administrator") as dora:
        assert dora.post(url, json={"outcome": "approved"}).status_code == 403
        assert dora.get("/api/v1/tasks").json()["items"] == []
    with caller(node, "olga", "operator") as olga:
        assert olga.post(url, json={"outcome": "approved"}).status_code == 403
    assert task_of(node, run_id)["status"] == "open"


def test_claims_keep_others_out_until_unclaimed(node: Node) -> None:
    """A claimed task can be claimed or decided only by its claimer; both are audited."""
    run_id = start(node, human_doc())
    task_id = task_of(node, run_id)["id"]
    with caller(node, "ann") as ann, caller(node, "ben") as ben:
        claimed = ann.post(f"/api/v1/tasks/{task_id}/claim")
        assert claimed.status_code == 200
        assert claimed.json()["claimed_by"] == "user:ann"
        assert ben.post(f"/api/v1/tasks/{task_id}/claim").status_code == 409
        assert ben.post(f"/api/v1/tasks/{task_id}/unclaim").status_code == 409
        refused = ben.post(f"/api/v1/tasks/{task_id}/decide", json={"outcome": "approved"})
        assert refused.status_code == 409
        assert ann.post(f"/api/v1/tasks/{task_id}/unclaim").json()["claimed_by"] is None
        decided = ben.post(f"/api/v1/tasks/{task_id}/decide", json={"outcome": "rejected"})
        assert decided.status_code == 200
    assert wait_for_end(node.client, run_id)["output"]["answer"]["outcome"] == "rejected"
    actions = [a.action for a in rows(node, AuditRow, AuditRow.resource == f"tasks/{task_id}")]
    assert actions == ["tasks.claim", "tasks.unclaim", "tasks.decide"]


def test_a_bad_form_is_a_422_with_pointers(node: Node) -> None:
    """Form data is validated against the task's schema on submit."""
    run_id = start(node, human_doc("fix", task="form", form=FORM))
    task = task_of(node, run_id)
    assert task["form"] == FORM
    with caller(node, "ann") as ann:
        url = f"/api/v1/tasks/{task['id']}/decide"
        bad = ann.post(url, json={"outcome": "submitted", "data": {"amount": -3}})
        assert bad.status_code == 422
        assert [e["pointer"] for e in bad.json()["errors"]] == ["/data/amount"]
        good = ann.post(url, json={"outcome": "submitted", "data": {"amount": 3}})
        assert good.status_code == 200
    assert wait_for_end(node.client, run_id)["output"]["answer"]["data"] == {"amount": 3}


def test_tasks_of_other_folders_are_not_found(node: Node) -> None:
    """An approver of another folder neither sees nor reaches the task."""
    run_id = start(node, human_doc())
    task_id = task_of(node, run_id)["id"]
    with caller(node, "finn", "approver", "finance") as finn:
        assert finn.get(f"/api/v1/tasks/{task_id}").status_code == 404
        assert finn.post(f"/api/v1/tasks/{task_id}/claim").status_code == 404
        assert finn.get("/api/v1/tasks", params={"scope": "all"}).json()["items"] == []


def test_a_decision_after_the_run_ended_is_a_conflict(node: Node) -> None:
    """Cancelling the run cancels its task; a decision then answers 409."""
    run_id = start(node, human_doc())
    task_id = task_of(node, run_id)["id"]
    assert node.client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 202
    assert wait_for_end(node.client, run_id)["status"] == "cancelled"
    with caller(node, "ann") as ann:
        late = ann.post(f"/api/v1/tasks/{task_id}/decide", json={"outcome": "approved"})
        assert late.status_code == 409


def test_overdue_and_folder_filters(node: Node) -> None:
    """`overdue=true` lists open tasks past their SLA; `folder` narrows to one folder."""
    late_run = start(node, human_doc("late", sla="1s", on_timeout="escalate"))
    calm_run = start(node, human_doc("calm"))
    late, calm = task_of(node, late_run), task_of(node, calm_run)
    assert late["due_at"] is not None
    assert calm["due_at"] is None

    def overdue() -> list[str]:
        params = {"scope": "all", "overdue": "true"}
        return [t["id"] for t in node.client.get("/api/v1/tasks", params=params).json()["items"]]

    deadline = time.monotonic() + 30
    while overdue() != [late["id"]] or not task_of(node, late_run)["escalated"]:
        assert time.monotonic() < deadline, overdue()
        time.sleep(0.1)  # polling until the SLA of the late task has passed and escalated it
    in_default = node.client.get("/api/v1/tasks", params={"scope": "all", "folder": "default"})
    assert {t["id"] for t in in_default.json()["items"]} == {late["id"], calm["id"]}
    elsewhere = node.client.get("/api/v1/tasks", params={"scope": "all", "folder": "finance"})
    assert elsewhere.json()["items"] == []
    subjects = {e.subject for e in rows(node, OutboxEntry)}
    assert f"amos.task.{late['id']}.escalated" in subjects


def test_two_approvers_at_once_one_wins_the_other_gets_409(node: Node) -> None:
    """Two decisions sent at the same moment: exactly one is 200, the other 409."""
    run_id = start(node, human_doc())
    url = f"/api/v1/tasks/{task_of(node, run_id)['id']}/decide"
    with (
        caller(node, "ann") as ann,
        caller(node, "ben") as ben,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        answers = list(
            pool.map(
                lambda pair: pair[0].post(url, json={"outcome": pair[1]}),
                [(ann, "approved"), (ben, "rejected")],
            )
        )
    assert sorted(a.status_code for a in answers) == [200, 409]
    winner = next(a for a in answers if a.status_code == 200).json()["decision"]
    assert wait_for_end(node.client, run_id)["output"]["answer"] == winner
