"""Runs leave audit records in the same store transaction as the change they record."""

from __future__ import annotations

import pytest

from amosflow import audit
from amosflow.store import open_store
from tests.api.conftest import Node
from tests.api.flows_util import doc, save, wait_for_end

pytestmark = pytest.mark.temporal


def test_run_start_and_end_are_audited_and_the_chain_verifies(node: Node) -> None:
    """A run through the API appends runs.start and runs.end, and the chain verifies."""
    save(node.client, doc())
    run_id = node.client.post(
        "/api/v1/runs", json={"flow": "greet", "inputs": {"who": "audit"}}
    ).json()["run_id"]
    assert wait_for_end(node.client, run_id)["status"] == "completed"
    store = open_store(node.config.store_url)
    try:
        with store.session(read_only=True) as session:
            records = audit.query(session, resource=f"runs/{run_id}").items
        actions = sorted(r.action for r in records)
        assert actions == ["runs.end", "runs.start"]
        start = next(r for r in records if r.action == "runs.start")
        assert start.details["flow"] == "greet"
        assert start.details["config_hash"].startswith("sha256:")
        report = audit.verify(store, sink=None, public_key=None)
        assert report.ok, report.problem
        assert report.checked >= 2
    finally:
        store.dispose()


def test_catalog_changes_are_audited(node: Node) -> None:
    """Saving and deleting a flow and a trigger each leave an audit record naming the commit."""
    saved = save(node.client, doc())
    node.client.request("DELETE", "/api/v1/flows/greet")
    store = open_store(node.config.store_url)
    try:
        with store.session(read_only=True) as session:
            records = audit.query(session, resource="flows/greet").items
        assert sorted(r.action for r in records) == ["flows.delete", "flows.save"]
        assert (
            next(r for r in records if r.action == "flows.save").details["commit"]
            == saved["version"]["commit"]
        )
        assert audit.verify(store, sink=None, public_key=None).ok
    finally:
        store.dispose()
