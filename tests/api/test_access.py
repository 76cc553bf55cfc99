"""Deny by default: every route refuses strangers, folders hide, roles limit, tricks fail."""

from __future__ import annotations

import re
import socket

import httpx
import pytest

from amosflow.api import is_public
from amosflow.api.app import openapi_document
from amosflow.identity import ROLE_PERMISSIONS, Binding, Principal, allows
from tests.api.conftest import Node
from tests.api.flows_util import doc, save, wait_for_end

pytestmark = pytest.mark.temporal
METHODS = ("get", "post", "put", "patch", "delete")
#: Public by design: they are how a caller gets credentials, or sign themselves (webhooks).
CREDENTIAL_ROUTES = {
    "/api/v1/auth/login",
    "/api/v1/auth/token",
    "/api/v1/setup",
    "/api/v1/runners/enroll",
}
#: SCIM's searches are reads that take their query as a POST body (RFC 7644 §3.4.3).
SEARCHES = {"/scim/v2/.search", "/scim/v2/Users/.search", "/scim/v2/Groups/.search"}
#: Liveness and readiness say nothing about any resource; orchestrators probe them unauthenticated.
PROBES = {"/healthz", "/readyz"}


def _operations() -> list[tuple[str, str]]:
    paths = openapi_document()["paths"]
    assert isinstance(paths, dict)
    found = [
        (method.upper(), re.sub(r"\{[^}]+\}", "x", path))
        for path, item in paths.items()
        for method in METHODS
        if method in item
    ]
    assert len(found) > 50, "the walk must cover the whole API"
    return found


def test_every_route_refuses_a_caller_without_credentials(node: Node) -> None:
    """No token: 401 on every operation of the OpenAPI document, except the credential routes."""
    with node.as_caller(None) as anonymous:
        for method, path in _operations():
            response = anonymous.request(method, path)
            if path in CREDENTIAL_ROUTES:
                assert response.status_code in {401, 422}, (method, path, response.text)
                continue
            if path in PROBES:
                assert set(response.json()) <= {"status", "checks"}
                continue
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.headers["content-type"].startswith("application/problem+json")


def test_a_bad_token_is_refused_on_every_route(node: Node) -> None:
    """A forged PAT, a random JWT-looking string and a non-bearer scheme get 401 everywhere."""
    forged = ["Bearer amos_pat_0123456789abcdef_forged", "Bearer a.b.c", "Basic YWRtaW46YWRtaW4="]
    operations = [op for op in _operations() if op[1] not in CREDENTIAL_ROUTES | PROBES]
    for index, (method, path) in enumerate(operations):
        headers = {"Authorization": forged[index % len(forged)]}
        with node.as_caller(None) as anonymous:
            response = anonymous.request(method, path, headers=headers)
        assert response.status_code in {401, 429}, (method, path, response.status_code)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/runs/"),
        ("GET", "/API/V1/RUNS"),
        ("GET", "/api/v1/runs;jsessionid=1"),
        ("GET", "/api/v1/flows%2fx"),
        ("GET", "/api/v1/flows/%2e%2e/%2e%2e/healthz"),
        ("GET", "/api/v1/runs/healthz"),
        ("GET", "/api/v1/flows/readyz"),
        ("GET", "/healthz/../api/v1/runs"),
        ("GET", "/healthz/"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/docs"),
        ("HEAD", "/api/v1/runs"),
        ("OPTIONS", "/api/v1/runs"),
        ("GET", "/api/v1/hooks/x/../../runs"),
        ("GET", "/nothing/here"),
    ],
)
def test_route_tricks_get_no_further_than_a_plain_call(node: Node, method: str, path: str) -> None:
    """Trailing slashes, case, `;`, encoded slashes, health-looking suffixes, HEAD, OPTIONS: 401."""
    with node.as_caller(None) as anonymous:
        response = anonymous.request(method, path)
    assert response.status_code == 401, (path, response.status_code, response.text)


def test_an_event_stream_without_a_token_is_refused(node: Node) -> None:
    """SSE asks like any GET: 401, and no stream starts."""
    with node.as_caller(None) as anonymous:
        response = anonymous.get("/api/v1/runs/x/events", headers={"Accept": "text/event-stream"})
    assert response.status_code == 401


def test_a_websocket_upgrade_without_a_token_is_refused(node: Node) -> None:
    """An upgrade request never gets 101 Switching Protocols."""
    host, port = node.url.removeprefix("http://").split(":")
    request = (
        "GET /api/v1/runs/x/events HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request.encode())
        status_line = sock.recv(4096).split(b"\r\n", 1)[0].decode()
    status = int(status_line.split()[1])
    assert status in {401, 403}, status_line


def test_the_public_paths_are_exact() -> None:
    """Only the exact public paths are public; anything near them is not."""
    assert is_public("/healthz")
    assert is_public("/api/v1/hooks/orders")
    assert is_public("/api/v1/hooks/sales/orders")
    near_paths = (
        "/healthz/",
        "/Healthz",
        "/api/v1/hooks/sales/orders/x",
        "/api/v1/hooks/Sales/orders",
        "/api/v1/hooks/",
        "/readyz;x",
    )
    for near in near_paths:
        assert not is_public(near), near


def _file_flow(node: Node, name: str, folder: str) -> None:
    node.client.post("/api/v1/folders", json={"name": folder})
    body = {"document": doc(name), "message": "test", "folder": folder}
    response = node.client.put(f"/api/v1/flows/{name}", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["folder"] == folder


def test_a_caller_from_another_folder_gets_404_never_403(node: Node) -> None:
    """Flows, runs and secrets in `finance` do not exist for an operator of `sales`."""
    _file_flow(node, "payroll", "finance")
    started = node.client.post("/api/v1/runs", json={"flow": "payroll", "inputs": {"who": "x"}})
    assert started.status_code == 201, started.text
    run_id = started.json()["run_id"]
    assert started.json()["folder"] == "finance"
    wait_for_end(node.client, run_id)
    secret = node.client.put("/api/v1/secrets/bank", json={"value": "s3cret", "folder": "finance"})
    assert secret.status_code == 201, secret.text

    token = node.token_for("sam", "operator", "sales")
    with node.as_caller(token) as sam:
        for method, path, body in [
            ("GET", "/api/v1/flows/payroll", None),
            ("GET", "/api/v1/flows/payroll/history", None),
            ("PUT", "/api/v1/flows/payroll", {"document": doc("payroll")}),
            ("DELETE", "/api/v1/flows/payroll", None),
            ("POST", "/api/v1/runs", {"flow": "payroll", "inputs": {"who": "x"}}),
            ("GET", f"/api/v1/runs/{run_id}", None),
            ("GET", f"/api/v1/runs/{run_id}/events", None),
            ("POST", f"/api/v1/runs/{run_id}/cancel", None),
            ("POST", f"/api/v1/runs/{run_id}/rerun", None),
            ("GET", "/api/v1/secrets/bank", None),
            ("DELETE", "/api/v1/secrets/bank", None),
        ]:
            response = sam.request(method, path, json=body)
            assert response.status_code == 404, (method, path, response.status_code)
        assert "payroll" not in {f["name"] for f in sam.get("/api/v1/flows").json()}
        assert run_id not in {r["run_id"] for r in sam.get("/api/v1/runs").json()["items"]}
        assert "bank" not in {s["name"] for s in sam.get("/api/v1/secrets").json()}
        # a name that does not exist at all answers exactly the same
        missing = sam.get("/api/v1/flows/nothing-here").json()["detail"]
        hidden = sam.get("/api/v1/flows/payroll").json()["detail"]
        assert missing.replace("nothing-here", "payroll") == hidden


def test_an_analyst_cannot_cancel_or_decide_and_an_approver_cannot_write(node: Node) -> None:
    """Seen but not allowed: 403 for the action, while reading works."""
    save(node.client, doc("greet"))
    started = node.client.post("/api/v1/runs", json={"flow": "greet", "inputs": {"who": "a"}})
    run_id = started.json()["run_id"]
    with node.as_caller(node.token_for("ana", "analyst", "default")) as ana:
        assert ana.get(f"/api/v1/runs/{run_id}").status_code == 200
        assert ana.post(f"/api/v1/runs/{run_id}/cancel").status_code == 403
        assert ana.put("/api/v1/triggers/t", json={"document": {"name": "t"}}).status_code == 403
    with node.as_caller(node.token_for("april", "approver", "default")) as april:
        assert april.get("/api/v1/flows/greet").status_code == 200
        assert april.put("/api/v1/flows/greet", json={"document": doc()}).status_code == 403
    analyst = Principal(id="a", kind="user", username="a", bindings=(Binding("analyst"),))
    assert not allows(analyst, "approvals.decide", "default")
    assert allows(analyst, "approvals.read", "default")


def test_an_auditor_cannot_mutate_anything(node: Node) -> None:
    """Every POST, PUT, PATCH and DELETE fails for an auditor, and none is audited as done."""
    save(node.client, doc("greet"))
    token = node.token_for("audrey", "auditor", "*")
    excluded = CREDENTIAL_ROUTES | SEARCHES
    mutations = [(m, p) for m, p in _operations() if m != "GET" and p not in excluded]
    with node.as_caller(token) as audrey:
        for method, path in mutations:
            concrete = path.replace("/flows/x", "/flows/greet")
            response = audrey.request(method, concrete, json={})
            if "/hooks/" in path:
                assert response.status_code == 401
            elif concrete.startswith("/api/v1/me/tokens"):
                assert response.status_code in {404, 422}, (method, concrete)
            else:
                assert response.status_code in {400, 403, 404, 422}, (
                    method,
                    concrete,
                    response.text,
                )
        for path in SEARCHES:  # reads: an auditor may search, and changes nothing doing so
            assert audrey.post(path, json={}).status_code == 200, path
        records = audrey.get("/api/v1/audit", params={"actor": "user:audrey"}).json()["items"]
    assert [r for r in records if r["outcome"] == "ok"] == []
    assert "audit.read" in ROLE_PERMISSIONS["auditor"]


def test_abac_condition_limits_an_operator_to_small_amounts(node: Node) -> None:
    """`resource.inputs.amount < 10000`: the small run starts, the large one is refused."""
    flow = doc("pay")
    flow["inputs"] = {"type": "object", "properties": {"amount": {"type": "integer"}}}
    flow["steps"][0]["with"]["value"] = "${string(inputs.amount)}"
    save(node.client, flow)
    token = node.token_for(
        "olga", "operator", "default", condition="resource.inputs.amount < 10000"
    )
    with node.as_caller(token) as olga:
        small = olga.post("/api/v1/runs", json={"flow": "pay", "inputs": {"amount": 500}})
        assert small.status_code == 201, small.text
        large = olga.post("/api/v1/runs", json={"flow": "pay", "inputs": {"amount": 50000}})
        assert large.status_code == 403, large.text
        # a large run the administrator started: outside olga's condition, so not listed and
        # not readable (403: the folder is hers, this run is not)
        other = node.client.post("/api/v1/runs", json={"flow": "pay", "inputs": {"amount": 90000}})
        assert olga.get(f"/api/v1/runs/{other.json()['run_id']}").status_code == 403
        listed = {r["run_id"] for r in olga.get("/api/v1/runs").json()["items"]}
        assert small.json()["run_id"] in listed
        assert other.json()["run_id"] not in listed


def test_a_scoped_token_cannot_exceed_its_scopes(node: Node) -> None:
    """A token scoped to flows.read reads flows and nothing else, and cannot mint a wider one."""
    save(node.client, doc("greet"))
    token = node.token_for("rita", "administrator", "*", scopes=["flows.read"])
    with node.as_caller(token) as rita:
        assert rita.get("/api/v1/flows/greet").status_code == 200
        assert rita.get("/api/v1/runs").json()["items"] == []
        started = rita.post("/api/v1/runs", json={"flow": "greet", "inputs": {"who": "r"}})
        assert started.status_code == 404
        wider = rita.post("/api/v1/me/tokens", json={"name": "more", "scopes": ["runs.start"]})
        assert wider.status_code == 422


def test_the_caller_is_the_audit_actor_and_the_commit_author(node: Node) -> None:
    """A change made with olga's token is audited as user:olga and committed by olga."""
    token = node.token_for("olga", "analyst", "default")
    with node.as_caller(token) as olga:
        saved = olga.put("/api/v1/flows/mine", json={"document": doc("mine")})
        assert saved.status_code == 200, saved.text
        assert saved.json()["version"]["author"].startswith("olga ")
    records = node.client.get("/api/v1/audit", params={"action": "flows.save"}).json()["items"]
    assert records[0]["actor"] == "user:olga"
    assert records[0]["resource"] == "flows/mine"


def test_anonymous_failures_are_audited_without_the_token(node: Node) -> None:
    """A refused token leaves a denied record with its HMAC, never the token itself."""
    canary = "amos_pat_feedfacefeedface_canary-token-value-0123456789"
    with node.as_caller(canary) as stranger:
        assert stranger.get("/api/v1/flows").status_code == 401
    records = node.client.get("/api/v1/audit", params={"action": "auth.token_refused"}).json()
    found = records["items"]
    assert found
    assert found[0]["outcome"] == "denied"
    assert found[0]["details"]["token"].startswith("hmac-sha256:")
    assert (
        canary not in httpx.get(f"{node.url}/api/v1/audit/export", headers=node.client.headers).text
    )
