"""A node started on an older install's catalog moves every object into its folder, audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from amosflow import identity
from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings
from amosflow.store import CatalogFolderRow, open_store
from tests.api.conftest import running_node
from tests.api.flows_util import doc
from tests.catalog.test_upgrade import legacy

pytestmark = pytest.mark.temporal


def test_a_node_adopts_an_old_catalog_into_the_recorded_folders(
    settings: EngineSettings, tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    """Objects filed in `hr` by the old side table are `hr`'s after start; the move is audited."""
    legacy(tmp_path / "catalog")
    store = open_store(f"sqlite:///{tmp_path / 'amos.db'}")
    with store.session() as session:
        identity.create_folder(session, "hr")
        session.add(CatalogFolderRow(kind="flows", name="payroll", folder="hr"))
    store.dispose()
    with running_node(settings, tmp_path, nats_server) as node:
        payroll = node.client.get("/api/v1/flows/payroll")
        assert payroll.status_code == 200, payroll.text
        assert payroll.json()["folder"] == "hr"
        assert node.client.get("/api/v1/flows/hello").json()["folder"] == "default"
        with node.as_caller(node.token_for("reader", "analyst", "default")) as reader:
            assert reader.get("/api/v1/flows/payroll").status_code == 404
        records = node.client.get("/api/v1/audit", params={"action": "catalog.migrate"}).json()
        assert [r["details"]["moved"] for r in records["items"]] == [
            ["configs/default/base", "flows/default/hello", "flows/hr/payroll"]
        ]
        saved = node.client.put("/api/v1/flows/hello", json={"document": doc("hello")})
        assert saved.status_code == 200, saved.text
