"""Callers for API tests: a user with a role in a folder, and its bearer token."""

from __future__ import annotations

from pathlib import Path

from amosflow import identity
from amosflow.identity import IdentitySettings
from amosflow.store import Store, open_store

PASSWORD = "correct horse battery staple"


def caller_token(
    store: Store,
    home: Path,
    username: str,
    role: str | None = "administrator",
    folder: str = "*",
    *,
    condition: str | None = None,
    scopes: list[str] | None = None,
) -> str:
    """Create ``username`` (if new) with ``role`` in ``folder`` and return an API token of it."""
    settings = IdentitySettings(home=home)
    with store.session() as session:
        row = identity.find_by_username(session, username)
        if row is None:
            row = identity.create_user(
                session, username=username, password=PASSWORD, settings=settings
            )
        if folder != "*" and not identity.folder_exists(session, folder):
            identity.create_folder(session, folder)
        if role is not None:
            identity.grant(
                session,
                subject_kind="principal",
                subject=row.id,
                role=role,
                folder=folder,
                condition=condition,
            )
        _, plaintext = identity.issue_api_token(
            session,
            principal_id=row.id,
            name=f"test {role}@{folder}",
            scopes=scopes,
            expires_in_days=1,
            settings=settings,
        )
    return plaintext


def admin_token(store_url: str, home: Path) -> str:
    """An API token of an administrator on every folder, created in the store at ``store_url``."""
    store = open_store(store_url)
    try:
        return caller_token(store, home, "admin")
    finally:
        store.dispose()
