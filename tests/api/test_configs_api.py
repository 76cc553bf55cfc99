"""Config bundles through /api/v1/configs and the Effective Config a run gets."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from amosflow.dsl import canonical_json
from tests.api.conftest import Node
from tests.api.flows_util import doc, save, wait_for_end

pytestmark = pytest.mark.temporal


def bundle(name: str, layer: str, values: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A config bundle document."""
    return {"name": name, "layer": layer, "values": values, **extra}


def put(node: Node, document: dict[str, Any], message: str = "test") -> dict[str, Any]:
    """Save a config bundle and return the API's answer."""
    response = node.client.put(
        f"/api/v1/configs/{document['name']}", json={"document": document, "message": message}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_save_list_get_history_delete(node: Node) -> None:
    """A bundle saves as a commit, lists, reads at a version, keeps its history and deletes."""
    first = put(node, bundle("base", "base", {"erp": {"url": "http://a"}}), "first")
    second = put(node, bundle("base", "base", {"erp": {"url": "http://b"}}), "second")
    assert first["version"]["commit"] != second["version"]["commit"]
    assert second["version"]["message"] == "second"

    listed = node.client.get("/api/v1/configs").json()
    assert [(c["name"], c["version"]["commit"]) for c in listed] == [
        ("base", second["version"]["commit"])
    ]
    latest = node.client.get("/api/v1/configs/base").json()
    assert latest["document"]["values"] == {"erp": {"url": "http://b"}}
    old = node.client.get("/api/v1/configs/base", params={"version": first["version"]["commit"]})
    assert old.json()["document"]["values"] == {"erp": {"url": "http://a"}}

    history = node.client.get("/api/v1/configs/base/history").json()
    assert [v["commit"] for v in history] == [
        second["version"]["commit"],
        first["version"]["commit"],
    ]

    deleted = node.client.delete("/api/v1/configs/base")
    assert deleted.status_code == 200
    assert node.client.get("/api/v1/configs/base").status_code == 404
    assert node.client.get("/api/v1/configs").json() == []
    assert len(node.client.get("/api/v1/configs/base/history").json()) == 3


def test_invalid_bundle_is_422_with_pointers_and_saves_nothing(node: Node) -> None:
    """A bundle that breaks the model answers 422 naming each pointer, and nothing is saved."""
    bad = {"name": "prod", "layer": "environment", "values": {}, "colour": "red"}
    response = node.client.put("/api/v1/configs/prod", json={"document": bad})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    pointers = {e["pointer"] for e in response.json()["errors"]}
    assert pointers == {"/environment", "/colour"}
    assert node.client.get("/api/v1/configs/prod").status_code == 404


def test_name_must_match_the_path(node: Node) -> None:
    """A bundle saved under another name than its own is refused at /document/name."""
    response = node.client.put(
        "/api/v1/configs/other", json={"document": bundle("base", "base", {})}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/document/name"


def test_effective_config_layers_base_environment_trigger(node: Node) -> None:
    """Base, then the chosen environment, then the chosen trigger merge key by key."""
    base = put(node, bundle("base", "base", {"erp": {"url": "http://base", "company": "A"}}))
    prod = put(
        node, bundle("prod", "environment", {"erp": {"url": "http://prod"}}, environment="prod")
    )
    put(node, bundle("test", "environment", {"erp": {"url": "http://test"}}, environment="test"))
    nightly = put(node, bundle("nightly", "trigger", {"erp": {"company": "N"}}))

    only_base = node.client.get("/api/v1/config/effective").json()
    assert only_base["values"] == {"erp": {"url": "http://base", "company": "A"}}
    assert [s["name"] for s in only_base["sources"]] == ["base"]

    layered = node.client.get(
        "/api/v1/config/effective", params={"environment": "prod", "trigger": "nightly"}
    ).json()
    assert layered["values"] == {"erp": {"url": "http://prod", "company": "N"}}
    assert layered["sources"] == [
        {"name": "base", "commit": base["version"]["commit"]},
        {"name": "prod", "commit": prod["version"]["commit"]},
        {"name": "nightly", "commit": nightly["version"]["commit"]},
    ]
    expected = "sha256:" + hashlib.sha256(canonical_json(layered["values"])).hexdigest()
    assert layered["sha256"] == expected


def test_run_is_refused_until_config_is_bound(node: Node) -> None:
    """A flow requiring erp.url is refused naming it, then runs with the bound value and hash."""
    save(node.client, doc(value="${config.erp.url}", requires={"config": ["erp.url"]}))
    refused = node.client.post("/api/v1/runs", json={"flow": "greet", "inputs": {"who": "x"}})
    assert refused.status_code == 422
    assert "erp.url" in json.dumps(refused.json())
    assert node.client.get("/api/v1/runs").json()["items"] == []

    put(node, bundle("base", "base", {"erp": {"url": "http://erp.local"}}))
    effective = node.client.get("/api/v1/config/effective").json()
    started = node.client.post("/api/v1/runs", json={"flow": "greet", "inputs": {"who": "x"}})
    assert started.status_code == 201, started.text
    run = started.json()
    assert run["config_hash"] == effective["sha256"]
    done = wait_for_end(node.client, run["run_id"])
    assert done["status"] == "completed"
    assert done["output"] == {"greeting": "http://erp.local"}
