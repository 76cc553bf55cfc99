"""Which folder each catalog object belongs to; Git keeps the objects, the store their folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, select

from amosflow.errors import NotFoundError
from amosflow.store.tables import DEFAULT_FOLDER, CatalogFolderRow, FolderRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def folder_of(session: Session, kind: str, name: str) -> str:
    """The folder of a catalog object; objects saved before folders existed are in `default`."""
    row = session.get(CatalogFolderRow, (kind, name))
    return row.folder if row is not None else DEFAULT_FOLDER


def folders_of(session: Session, kind: str) -> dict[str, str]:
    """Name → folder of every catalog object of a kind that has one recorded."""
    rows = session.scalars(select(CatalogFolderRow).where(CatalogFolderRow.kind == kind))
    return {row.name: row.folder for row in rows}


def require_folder(session: Session, folder: str) -> str:
    """Return ``folder`` when it exists; NotFoundError otherwise."""
    if session.get(FolderRow, folder) is None:
        raise NotFoundError(f"folder {folder!r} not found")
    return folder


def file_under(session: Session, kind: str, name: str, folder: str) -> None:
    """Record (or move) a catalog object into ``folder``."""
    require_folder(session, folder)
    row = session.get(CatalogFolderRow, (kind, name))
    if row is None:
        session.add(CatalogFolderRow(kind=kind, name=name, folder=folder))
    else:
        row.folder = folder


def forget(session: Session, kind: str, name: str) -> None:
    """Drop the folder record of a deleted catalog object."""
    session.execute(
        delete(CatalogFolderRow).where(CatalogFolderRow.kind == kind, CatalogFolderRow.name == name)
    )
