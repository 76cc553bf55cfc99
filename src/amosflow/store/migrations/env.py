"""Alembic environment: migrates the connection that ``amosflow.store._migrate`` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from amosflow.store._tables import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise TypeError("migrate through amosflow.store._migrate, which passes a connection")
_run(connection)
