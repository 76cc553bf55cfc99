"""Store fixtures: every store test runs on SQLite and on a real, throw-away PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from amosflow.store import Store, open_store
from tests.support.postgres import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'amos.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated store on an empty database."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.dispose()


@pytest.fixture
def pg_store(postgres_server: PostgresServer) -> Iterator[Store]:
    """A migrated store on PostgreSQL only, for behaviour SQLite does not have (row locks)."""
    opened = open_store(postgres_server.create_database())
    try:
        yield opened
    finally:
        opened.dispose()
