"""What every route over a Git-versioned catalog object does: guard, save, read, list, delete.

Flows, config bundles and model definitions differ in their schemas and in what a save means
to the rest of the node, not in how a version is guarded, audited and committed; this module
owns that part once so the three stay the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Query

from amosflow.api._schemas import FOLDER_PATTERN, VersionPublic
from amosflow.errors import Diagnostic, ValidationFailedError
from amosflow.services import access, auditing

if TYPE_CHECKING:
    from amosflow.catalog import Entry
    from amosflow.identity import Principal
    from amosflow.services import ControlPlane

__all__ = [
    "FolderQuery",
    "delete",
    "history",
    "read",
    "readable",
    "require_path_name",
    "save",
    "to_version",
]

FolderQuery = Annotated[
    str | None,
    Query(
        pattern=FOLDER_PATTERN,
        description="Folder of the object; needed only when you see the name in several.",
    ),
]


def to_version(version: object) -> VersionPublic:
    """The public form of a catalog version (commit, content hash, author, time)."""
    return VersionPublic.model_validate(version, from_attributes=True)


def require_path_name(name: str, document: dict[str, Any]) -> None:
    """Refuse a document whose own name is not the one in the path it is saved under."""
    if document.get("name") != name:
        raise ValidationFailedError(
            [Diagnostic("/document/name", f"must be {name!r}, the name in the path")]
        )


def save(
    cp: ControlPlane,
    caller: Principal,
    kind: str,
    name: str,
    document: dict[str, Any],
    *,
    folder: str | None,
    author: str | None,
    message: str,
) -> tuple[str, VersionPublic]:
    """Commit a new version as the caller, audited; returns its folder and version."""
    placed = access.write_guard(cp, caller, kind, name, folder)
    version = auditing.save(
        cp.store,
        cp.catalog,
        kind,
        name,
        document,
        author=access.author_of(caller, author),
        message=message,
        actor=caller.actor,
        folder=placed,
    )
    return placed, to_version(version)


def readable(
    cp: ControlPlane, caller: Principal, kind: str, folder: str | None = None
) -> list[Entry]:
    """Every object of a kind the caller may read (in ``folder`` only, when given)."""
    shown = access.visible_folders(caller, access.reader(kind), folder)
    if shown is None:
        return cp.catalog.list(kind)
    return [entry for each in shown for entry in cp.catalog.list(kind, each)]


def read(
    cp: ControlPlane,
    caller: Principal,
    permission: str,
    kind: str,
    name: str,
    *,
    folder: str | None = None,
    version: str | None = None,
) -> Entry:
    """One object at its latest version or the one asked for (a deleted object's too)."""
    found = access.guard(
        cp, caller, permission, kind, name, folder=folder, ever=version is not None
    )
    return cp.catalog.get(kind, name, version, folder=found)


def history(
    cp: ControlPlane,
    caller: Principal,
    permission: str,
    kind: str,
    name: str,
    *,
    folder: str | None = None,
) -> list[VersionPublic]:
    """Every version of an object, newest first (a deleted object's too)."""
    found = access.guard(cp, caller, permission, kind, name, folder=folder, ever=True)
    return [to_version(v) for v in cp.catalog.history(kind, name, folder=found)]


def delete(
    cp: ControlPlane,
    caller: Principal,
    permission: str,
    kind: str,
    name: str,
    *,
    folder: str | None,
    author: str | None,
    message: str,
) -> VersionPublic:
    """Delete an object as the caller, audited; the deletion is a commit, so history stays."""
    found = access.guard(cp, caller, permission, kind, name, folder=folder)
    return to_version(
        auditing.delete(
            cp.store,
            cp.catalog,
            kind,
            name,
            folder=found,
            author=access.author_of(caller, author),
            message=message or f"delete {name}",
            actor=caller.actor,
        )
    )
