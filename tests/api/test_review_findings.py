"""Regression tests for the findings of the security review, each through the public API.

Each test is named for what must hold now; its docstring names the finding it closes.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from amosflow.store import open_store
from amosflow.triggers import sign
from tests.api.conftest import Node
from tests.api.flows_util import doc, save, wait_for_end
from tests.support.httpserver import LoopbackServer

pytestmark = pytest.mark.temporal
KEY = "hook-key-9a8b7c"


def folders(node: Node, *names: str) -> None:
    for name in names:
        created = node.client.post("/api/v1/folders", json={"name": name})
        assert created.status_code == 201, created.text


def put(node: Node, kind: str, name: str, document: dict[str, Any], folder: str) -> httpx.Response:
    return node.client.put(f"/api/v1/{kind}/{name}", json={"document": document, "folder": folder})


def test_a_folder_administrator_cannot_approve_an_mcp_server(
    node: Node, http_server: LoopbackServer
) -> None:
    """Finding 2: approving runs a command on the node, so it needs an administrator of `*`."""
    folders(node, "lab")
    server = {"name": "crm", "transport": "http", "url": f"{http_server.url}/mcp"}
    assert put(node, "mcp-servers", "crm", server, "lab").status_code == 200
    with node.as_caller(node.token_for("lab-admin", "administrator", "lab")) as lab_admin:
        refused = lab_admin.post("/api/v1/mcp-servers/crm/approve")
        assert refused.status_code == 403, refused.text
        assert lab_admin.get("/api/v1/mcp-servers/crm").json()["approved"] is False
    assert http_server.requests == []


def test_a_run_id_of_another_folder_returns_nothing_of_that_run(node: Node) -> None:
    """Finding 5: another folder's run id, or a trigger's future one, cannot be claimed."""
    folders(node, "alpha", "beta")
    for folder in ("alpha", "beta"):
        assert put(node, "flows", "greet", doc(), folder).status_code == 200
    secret_inputs = {"who": "beta-inputs-5e2d"}
    key = uuid.uuid4().hex[:8]  # the session's Temporal outlives this test's store
    beta = node.client.post(
        "/api/v1/runs",
        json={"flow": "greet", "folder": "beta", "inputs": secret_inputs, "run_id": f"beta:{key}"},
    )
    assert beta.status_code == 201, beta.text
    wait_for_end(node.client, f"beta:{key}")
    with node.as_caller(node.token_for("alpha-op", "operator", "alpha")) as alpha:
        for taken in (f"beta:{key}", "alpha::nightly::2026-12-08T03:00:00Z", "greet-0123456789ab"):
            claimed = alpha.post(
                "/api/v1/runs", json={"flow": "greet", "inputs": {"who": "x"}, "run_id": taken}
            )
            assert claimed.status_code == 422, (taken, claimed.text)
            assert "beta-inputs" not in claimed.text
        own = {"flow": "greet", "inputs": {"who": "x"}, "run_id": f"alpha:{key}"}
        first, again = alpha.post("/api/v1/runs", json=own), alpha.post("/api/v1/runs", json=own)
        assert first.status_code == again.status_code == 201
        assert first.json()["run_id"] == again.json()["run_id"] == f"alpha:{key}"
        assert first.json()["folder"] == "alpha"


def test_a_conditional_administrator_cannot_grant_itself_an_unconditional_binding(
    node: Node,
) -> None:
    """Finding 6: a condition that cannot be evaluated grants nothing; grants are capped."""
    folders(node, "lab")
    token = node.token_for("cond", "administrator", "*", condition="resource.folder == 'lab'")
    me = node.client.get("/api/v1/users").json()
    cond_id = next(u["id"] for u in me if u["username"] == "cond")
    with node.as_caller(token) as cond:
        widen = {"subject_kind": "principal", "subject": cond_id, "role": "administrator"}
        assert cond.post("/api/v1/role-bindings", json=widen).status_code == 403
        assert cond.get("/api/v1/users").status_code == 403
        assert put_as(cond, "flows", "in-lab", doc("in-lab"), "lab").status_code == 200
        assert put_as(cond, "flows", "in-default", doc("in-default"), "default").status_code in {
            403,
            404,
        }
    bindings = node.client.get("/api/v1/role-bindings").json()
    assert [b["condition"] for b in bindings if b["subject"] == cond_id] == [
        "resource.folder == 'lab'"
    ]


def put_as(
    client: httpx.Client, kind: str, name: str, document: dict[str, Any], folder: str
) -> Any:
    return client.put(f"/api/v1/{kind}/{name}", json={"document": document, "folder": folder})


def test_a_deleted_flow_keeps_its_folder_and_its_history_stays_there(node: Node) -> None:
    """Finding 7: after a flow of `hr` is deleted, readers of `default` still see nothing of it."""
    folders(node, "hr")
    assert put(node, "flows", "payroll", doc("payroll"), "hr").status_code == 200
    deleted = node.client.request("DELETE", "/api/v1/flows/payroll", params={"folder": "hr"})
    assert deleted.status_code == 200, deleted.text
    with node.as_caller(node.token_for("reader", "analyst", "default")) as reader:
        hidden = reader.get("/api/v1/flows/payroll/history")
        missing = reader.get("/api/v1/flows/never-was/history")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["detail"].replace("payroll", "X") == missing.json()["detail"].replace(
            "never-was", "X"
        )
    with node.as_caller(node.token_for("hr-reader", "analyst", "hr")) as hr:
        versions = hr.get("/api/v1/flows/payroll/history").json()
        assert len(versions) == 2
        assert hr.get("/api/v1/flows/payroll").status_code == 404  # gone at its latest
    records = node.client.get("/api/v1/audit", params={"action": "flows.delete"}).json()
    assert [r["folder"] for r in records["items"]] == ["hr"]


def _refuse_audit_writes(node: Node) -> Any:
    """Make every audit append fail, as a full or broken trail would; returns the undo."""
    store = open_store(node.config.store_url)
    with store.session() as session:
        session.execute(
            text(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_records "
                "BEGIN SELECT RAISE(ABORT, 'audit refused by the test'); END"
            )
        )

    def undo() -> None:
        with store.session() as session:
            session.execute(text("DROP TRIGGER refuse_audit"))
        store.dispose()

    return undo


def test_a_change_whose_audit_record_cannot_be_written_does_not_happen(node: Node) -> None:
    """Finding 12: a catalog save and a secret write fail with 503 and leave nothing behind."""
    save(node.client, doc("kept"))
    head = node.client.get("/api/v1/flows/kept/history").json()[0]["commit"]
    undo = _refuse_audit_writes(node)
    try:
        flow = node.client.put("/api/v1/flows/unaudited", json={"document": doc("unaudited")})
        assert flow.status_code == 503, flow.text
        changed = node.client.put("/api/v1/flows/kept", json={"document": doc("kept", "x")})
        assert changed.status_code == 503, changed.text
        secret = node.client.put("/api/v1/secrets/unaudited", json={"value": "v"})
        assert secret.status_code == 503, secret.text
    finally:
        undo()
    assert node.client.get("/api/v1/flows/unaudited").status_code == 404
    assert node.client.get("/api/v1/flows/unaudited/history").status_code == 404
    kept = node.client.get("/api/v1/flows/kept/history").json()
    assert [v["commit"] for v in kept] == [head]
    assert node.client.get("/api/v1/secrets/unaudited").status_code == 404


def test_a_hidden_object_and_a_missing_one_answer_the_same_404(node: Node) -> None:
    """Finding 13: status and body are the same for a flow of a hidden folder and no flow."""
    folders(node, "hr")
    assert put(node, "flows", "payroll", doc("payroll"), "hr").status_code == 200
    with node.as_caller(node.token_for("outsider", "operator", "default")) as outsider:
        for path in ("/api/v1/flows/{}", "/api/v1/flows/{}/history"):
            hidden = outsider.get(path.format("payroll"))
            missing = outsider.get(path.format("payrolx"))
            assert hidden.status_code == missing.status_code == 404
            assert hidden.text.replace("payroll", "X") == missing.text.replace("payrolx", "X")
        started = outsider.post("/api/v1/runs", json={"flow": "payroll", "inputs": {}})
        never = outsider.post("/api/v1/runs", json={"flow": "payrolx", "inputs": {}})
        assert started.status_code == never.status_code == 404
        assert started.text.replace("payroll", "X") == never.text.replace("payrolx", "X")


def test_a_run_end_record_belongs_to_the_runs_folder(node: Node) -> None:
    """Finding 16: `runs.end` lands in the run's folder; an auditor of another sees none."""
    folders(node, "alpha")
    assert put(node, "flows", "greet", doc(), "alpha").status_code == 200
    run = node.client.post(
        "/api/v1/runs", json={"flow": "greet", "folder": "alpha", "inputs": {"who": "a"}}
    ).json()
    assert wait_for_end(node.client, run["run_id"])["status"] == "completed"
    deadline = time.monotonic() + 30
    ends: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not ends:
        ends = node.client.get("/api/v1/audit", params={"action": "runs.end"}).json()["items"]
        time.sleep(0.1)  # the watcher appends the record a moment after the run ends
    assert [(r["resource"], r["folder"]) for r in ends] == [(f"runs/{run['run_id']}", "alpha")]
    with node.as_caller(node.token_for("aud", "auditor", "default")) as auditor:
        seen = auditor.get("/api/v1/audit", params={"action": "runs.end"}).json()["items"]
        assert seen == []


def hook(name: str, key_name: str = "hook.key", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "webhook", "flow": "greet", "secret": key_name, **extra}


def delivery(
    body: bytes, *, delivery_id: str, key: str = KEY, at: int | None = None
) -> dict[str, str]:
    stamp = str(at if at is not None else int(time.time()))
    return {
        "content-type": "application/json",
        "X-Amos-Timestamp": stamp,
        "X-Amos-Delivery": delivery_id,
        "X-Amos-Signature": sign(key.encode(), stamp, delivery_id, body),
    }


@pytest.fixture
def hooked(node: Node) -> Node:
    """A webhook `orders` in folder `sales`, its key in sales's vault, limited to 2 at once."""
    folders(node, "sales")
    assert put(node, "flows", "greet", doc(), "sales").status_code == 200
    key = node.client.put("/api/v1/secrets/hook.key", json={"value": KEY, "folder": "sales"})
    assert key.status_code == 201, key.text
    trigger = hook("orders", burst=2, rate_per_s=0.01)
    assert put(node, "triggers", "orders", trigger, "sales").status_code == 200
    return node


def test_a_captured_delivery_replayed_under_a_new_id_is_refused(hooked: Node) -> None:
    """Finding 10: the signature covers the delivery id, so a new id needs a new signature."""
    body = json.dumps({"who": "once"}).encode()
    headers = delivery(body, delivery_id="d-1")
    first = hooked.client.post("/api/v1/hooks/sales/orders", content=body, headers=headers)
    assert first.status_code == 202, first.text
    replayed = hooked.client.post(
        "/api/v1/hooks/sales/orders",
        content=body,
        headers={**headers, "X-Amos-Delivery": "d-2"},
    )
    assert replayed.status_code == 401
    wait_for_end(hooked.client, first.json()["run_id"])
    webhook_runs = [
        r for r in hooked.client.get("/api/v1/runs").json()["items"] if r["trigger"] == "webhook"
    ]
    assert len(webhook_runs) == 1


def test_known_and_unknown_hooks_answer_alike_until_the_signature_is_verified(
    hooked: Node,
) -> None:
    """Finding 10: unsigned, mis-signed, mistyped or oversized, a real hook looks like none."""
    body = json.dumps({"who": "x"}).encode()
    attempts: list[tuple[dict[str, str], bytes]] = [
        ({"content-type": "application/json"}, body),
        (delivery(body, delivery_id="p", key="wrong"), body),
        ({**delivery(body, delivery_id="p", key="wrong"), "content-type": "text/plain"}, body),
        (delivery(body, delivery_id="p", key="wrong"), b"{" + b" " * 2_000_000 + b"}"),
        (delivery(body, delivery_id="p", at=int(time.time()) - 3600), body),
    ]
    for headers, content in attempts:
        real = hooked.client.post("/api/v1/hooks/sales/orders", content=content, headers=headers)
        none = hooked.client.post("/api/v1/hooks/sales/nothing", content=content, headers=headers)
        other = hooked.client.post("/api/v1/hooks/nowhere/orders", content=content, headers=headers)
        assert real.status_code == none.status_code == other.status_code == 401
        assert real.text == none.text == other.text


def test_unsigned_deliveries_cannot_drain_a_hooks_rate_limit(hooked: Node) -> None:
    """Finding 10: only verified deliveries take from the hook's bucket."""
    body = json.dumps({"who": "flood"}).encode()
    for i in range(10):
        forged = delivery(body, delivery_id=f"f-{i}", key="wrong")
        assert (
            hooked.client.post(
                "/api/v1/hooks/sales/orders", content=body, headers=forged
            ).status_code
            == 401
        )
    genuine = hooked.client.post(
        "/api/v1/hooks/sales/orders", content=body, headers=delivery(body, delivery_id="g-1")
    )
    assert genuine.status_code == 202, genuine.text
    wait_for_end(hooked.client, genuine.json()["run_id"])


def test_a_hooks_key_comes_from_its_own_folders_vault_only(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 17: the key is a vault secret of the hook's folder, not an environment value."""
    folders(node, "sales", "other")
    assert put(node, "flows", "greet", doc(), "sales").status_code == 200
    assert put(node, "triggers", "orders", hook("orders"), "sales").status_code == 200
    monkeypatch.setenv("AMOS_SECRET_HOOK_KEY", KEY)
    elsewhere = node.client.put("/api/v1/secrets/hook.key", json={"value": KEY, "folder": "other"})
    assert elsewhere.status_code == 201
    body = json.dumps({"who": "k"}).encode()
    refused = node.client.post(
        "/api/v1/hooks/sales/orders", content=body, headers=delivery(body, delivery_id="k-1")
    )
    assert refused.status_code == 401
    own = node.client.put("/api/v1/secrets/hook.key", json={"value": KEY, "folder": "sales"})
    assert own.status_code == 201
    accepted = node.client.post(
        "/api/v1/hooks/sales/orders", content=body, headers=delivery(body, delivery_id="k-2")
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["run_id"] == "sales::orders::k-2"
    assert wait_for_end(node.client, accepted.json()["run_id"])["status"] == "completed"
