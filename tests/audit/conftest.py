"""Audit fixtures: the store tests' SQLite and PostgreSQL stores, and a per-test install home."""

from __future__ import annotations

from pathlib import Path

import pytest

from amosflow import audit
from amosflow.store import Store
from tests.store.conftest import pg_store, store, store_url  # noqa: F401


@pytest.fixture
def settings(tmp_path: Path) -> audit.AuditSettings:
    """Audit settings of a fresh install home (keys and sink under <home>/audit)."""
    return audit.AuditSettings(home=tmp_path / "home", audit_dir=None, audit_sink=None)


@pytest.fixture
def signer(settings: audit.AuditSettings) -> audit.CheckpointSigner:
    """The install's checkpoint signer, its key created on first use."""
    return audit.CheckpointSigner.from_file(settings.key_path)


@pytest.fixture
def sink(settings: audit.AuditSettings) -> audit.JsonlSink:
    """The install's external checkpoint file."""
    return audit.JsonlSink(settings.sink_path)


@pytest.fixture
def checkpointer(
    store: Store,  # noqa: F811 - the imported fixture, requested by name
    signer: audit.CheckpointSigner,
    sink: audit.JsonlSink,
) -> audit.Checkpointer:
    """A checkpointer that signs every five records."""
    return audit.Checkpointer(store, signer, sink, every_records=5, every_seconds=3600)
