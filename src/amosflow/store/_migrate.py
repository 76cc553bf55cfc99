"""Run the in-package Alembic migrations from code, safely when several processes start at once."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, text

MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant works; it only has to be the same in every process that migrates.
_PG_LOCK_KEY = 0x414D4F53  # "AMOS"


def alembic_config(connection: Connection | None = None) -> Config:
    """Build the Alembic configuration in code, so users never need an alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op when it is already there."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Held until commit: a second process waits here, then finds the schema at head.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        # On SQLite the store begins every transaction IMMEDIATE, which is the lock.
        command.upgrade(alembic_config(connection), "head")
