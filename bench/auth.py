"""An administrator's API token for the benchmarks, created straight in the store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amosflow import identity
from amosflow.config import StoreSettings
from amosflow.identity import IdentitySettings
from amosflow.store import open_store

if TYPE_CHECKING:
    from pathlib import Path


def admin_token(home: Path) -> str:
    """Create the user `bench` (administrator on every folder) in ``home`` and an API token."""
    settings = IdentitySettings(home=home)
    store = open_store(StoreSettings(home=home).url)
    try:
        with store.session() as session:
            row = identity.create_user(session, username="bench", password=None, settings=settings)
            identity.grant(session, subject_kind="principal", subject=row.id, role="administrator")
            _, token = identity.issue_api_token(
                session,
                principal_id=row.id,
                name="bench",
                scopes=None,
                expires_in_days=1,
                settings=settings,
            )
    finally:
        store.dispose()
    return token
