"""Migrations: schema from nothing, idempotent, safe under concurrent starts, matching the models."""

from __future__ import annotations

import threading

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from amosflow.store import Base, Store, alembic_config, open_store

TABLES = {
    "folders",
    "catalog_folders",
    "principals",
    "groups",
    "scim_resources",
    "group_members",
    "role_bindings",
    "api_tokens",
    "runs",
    "run_timelines",
    "outbox",
    "webhook_deliveries",
    "audit_records",
    "audit_checkpoints",
    "audit_holds",
    "audit_anchor",
    "audit_pending",
    "secrets",
    "secret_versions",
    "runners",
    "enrollment_tokens",
    "runner_jobs",
    "tasks",
    "ai_usage",
    "alembic_version",
}


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _version(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def test_open_creates_the_schema_on_an_empty_database(store: Store) -> None:
    """Opening an empty database creates every table and stamps the newest revision."""
    assert set(inspect(store.engine).get_table_names()) == TABLES
    assert _version(store) == [_head()]


def test_opening_again_is_a_no_op(store_url: str) -> None:
    """A second open of a migrated database changes nothing and keeps one version row."""
    first = open_store(store_url)
    first.dispose()
    second = open_store(store_url)
    try:
        assert set(inspect(second.engine).get_table_names()) == TABLES
        assert _version(second) == [_head()]
    finally:
        second.dispose()


def test_two_processes_opening_a_fresh_database_at_once_both_succeed(store_url: str) -> None:
    """Concurrent first starts serialise on the migration lock instead of colliding."""
    barrier = threading.Barrier(2)
    stores: list[Store] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            stores.append(open_store(store_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert _version(stores[0]) == [_head()]
    finally:
        for opened in stores:
            opened.dispose()


def test_the_migrations_match_the_models(store: Store) -> None:
    """Autogenerate finds no difference, so a model change without a migration fails here."""
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
