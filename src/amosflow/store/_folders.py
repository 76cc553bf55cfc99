"""Folders in the store: which exist, and where an older install had filed its catalog objects."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from amosflow.errors import NotFoundError
from amosflow.store._tables import CatalogFolderRow, FolderRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def all_folders_of(session: Session) -> dict[tuple[str, str], str]:
    """(kind, name) → folder of every catalog object recorded before folders were namespaces.

    Only the upgrade of an older install reads this: the catalog itself now keeps each
    object under its folder.
    """
    return {(row.kind, row.name): row.folder for row in session.scalars(select(CatalogFolderRow))}


def require_folder(session: Session, folder: str) -> str:
    """Return ``folder`` when it exists; NotFoundError otherwise."""
    if session.get(FolderRow, folder) is None:
        raise NotFoundError(f"folder {folder!r} not found")
    return folder
