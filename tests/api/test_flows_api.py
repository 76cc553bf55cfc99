"""The flow catalog through /api/v1/flows: every save a validated, versioned commit."""

from __future__ import annotations

import pytest

from tests.api.conftest import Node
from tests.api.flows_util import doc, save

pytestmark = pytest.mark.temporal


def test_create_then_get_latest(node: Node) -> None:
    """A created flow is returned with its commit and content hash."""
    response = node.client.post("/api/v1/flows", json={"document": doc(), "message": "first"})
    assert response.status_code == 201, response.text
    version = response.json()["version"]
    assert len(version["commit"]) == 40
    assert version["content_hash"].startswith("sha256:")
    got = node.client.get("/api/v1/flows/greet").json()
    assert got["document"] == doc()
    assert got["version"]["commit"] == version["commit"]


def test_create_twice_is_a_conflict(node: Node) -> None:
    """POST of an existing name answers 409 problem+json."""
    node.client.post("/api/v1/flows", json={"document": doc()})
    response = node.client.post("/api/v1/flows", json={"document": doc()})
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")


def test_versions_history_and_diff(node: Node) -> None:
    """Each update is a version; old versions stay readable and diffable."""
    first = save(node.client, doc())["version"]["commit"]
    second = save(node.client, doc(value="Hi, ${inputs.who}!"))["version"]["commit"]
    history = node.client.get("/api/v1/flows/greet/history").json()
    assert [v["commit"] for v in history] == [second, first]
    old = node.client.get("/api/v1/flows/greet", params={"version": first}).json()
    assert old["document"]["steps"][0]["with"]["value"] == "Hello, ${inputs.who}!"
    diff = node.client.get("/api/v1/flows/greet/diff", params={"from": first, "to": second}).json()
    assert "-" in diff["diff"]
    assert "Hi, ${inputs.who}!" in diff["diff"]


def test_invalid_flow_names_every_pointer(node: Node) -> None:
    """An invalid document answers 422 with each error's JSON Pointer, and nothing is saved."""
    bad = doc()
    bad["steps"][0]["with"] = {"valu": 1}
    response = node.client.put("/api/v1/flows/greet", json={"document": bad})
    assert response.status_code == 422
    pointers = {e["pointer"] for e in response.json()["errors"]}
    assert "/steps/0/with/valu" in pointers
    assert node.client.get("/api/v1/flows/greet").status_code == 404


def test_delete_is_a_commit(node: Node) -> None:
    """A deleted flow is gone from the catalog but its history remains."""
    save(node.client, doc())
    deleted = node.client.request("DELETE", "/api/v1/flows/greet")
    assert deleted.status_code == 200, deleted.text
    assert node.client.get("/api/v1/flows/greet").status_code == 404
    assert node.client.get("/api/v1/flows").json() == []
