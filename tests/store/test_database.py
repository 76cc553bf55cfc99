"""Opening the store: backend settings, URL handling, errors, public surface."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, MetaData, String, text

import amosflow.store
from amosflow.errors import StoreError
from amosflow.store import Base, Store, list_runs, open_store, record_run
from tests.store.records import run


def test_the_public_surface_is_pinned() -> None:
    """Other packages code against exactly these names."""
    assert set(amosflow.store.__all__) == {
        "AUDIT_OUTCOMES",
        "AiUsageRow",
        "ApiTokenRow",
        "AuditAnchorRow",
        "AuditCheckpointRow",
        "AuditHoldRow",
        "AuditPendingRow",
        "AuditRow",
        "BINDING_SUBJECTS",
        "Base",
        "CatalogFolderRow",
        "DEFAULT_FOLDER",
        "EnrollmentTokenRow",
        "FolderRow",
        "GroupMemberRow",
        "GroupRow",
        "INSTALL_FOLDER",
        "OutboxEntry",
        "OutboxRow",
        "PRINCIPAL_SOURCES",
        "Page",
        "PrincipalRow",
        "RoleBindingRow",
        "RunRecord",
        "RunRow",
        "RunStatus",
        "RunTrigger",
        "RunnerJobRow",
        "RunnerRow",
        "ScimResourceRow",
        "SecretRow",
        "SecretVersionRow",
        "Store",
        "TaskRow",
        "alembic_config",
        "check_limit",
        "claim_pending",
        "count_runs",
        "decode_cursor",
        "encode_cursor",
        "enqueue",
        "folders",
        "get_run",
        "hooks",
        "list_runs",
        "mark_failed",
        "mark_published",
        "newest_first",
        "open_store",
        "outbox",
        "prune_deliveries",
        "record_run",
        "remember_delivery",
        "runs",
        "set_status",
    }


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    """The embedded database uses WAL, enforces foreign keys and waits for the writer."""
    store = open_store(f"sqlite:///{tmp_path / 'home' / 'amos.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert int(conn.execute(text("PRAGMA busy_timeout")).scalar() or 0) > 0
    finally:
        store.dispose()


def test_an_in_memory_sqlite_store_is_shared_by_its_sessions() -> None:
    """sqlite:// keeps one connection, so the migrated schema is visible to every session."""
    store = open_store("sqlite://")
    try:
        with store.session() as session:
            record_run(session, run("r1"))
        with store.session(read_only=True) as session:
            assert [r.run_id for r in list_runs(session).items] == ["r1"]
    finally:
        store.dispose()


def test_a_bare_postgresql_url_uses_psycopg(store: Store) -> None:
    """postgresql:// URLs get the psycopg (v3) driver we ship instead of psycopg2."""
    if store.dialect == "postgresql":
        bare = store.engine.url.set(drivername="postgresql")
        other = open_store(bare.render_as_string(hide_password=False))
        try:
            assert other.engine.url.drivername == "postgresql+psycopg"
        finally:
            other.dispose()
    else:
        assert store.engine.url.drivername == "sqlite"


def test_an_unreachable_database_is_a_store_error() -> None:
    """A database that cannot be reached raises StoreError, not a driver exception."""
    with pytest.raises(StoreError):
        open_store("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_a_model_change_without_a_migration_is_detected(store: Store) -> None:
    """The autogenerate comparison notices a column that exists only in the models."""
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["runs"].append_column(Column("priority", String(100)))
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), changed)
    assert [(d[0], d[3].name) for d in diff] == [("add_column", "priority")]
