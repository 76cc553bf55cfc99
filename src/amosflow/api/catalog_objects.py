"""What every route over a Git-versioned catalog object does: guard, save, read, list, delete.

Flows, config bundles and model definitions differ in their schemas and in what a save means
to the rest of the node, not in how a version is guarded, audited and committed; this module
owns that part once so the three stay the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amosflow.api import access
from amosflow.api.schemas import VersionPublic
from amosflow.errors import Diagnostic, ValidationFailedError
from amosflow.services import auditing

if TYPE_CHECKING:
    from amosflow.catalog import Entry
    from amosflow.identity.principal import Principal
    from amosflow.services.runs import ControlPlane

__all__ = [
    "delete",
    "history",
    "read",
    "readable",
    "require_path_name",
    "save",
    "to_version",
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
    placed = access.guard_write(cp, caller, kind, name, folder)
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


def readable(cp: ControlPlane, caller: Principal, kind: str) -> list[tuple[Entry, str]]:
    """Every object of a kind the caller may read, at its latest version, with its folder."""
    entries = cp.catalog.list(kind)
    shown = access.visible(cp, caller, kind, (e.name for e in entries))
    return [(e, shown[e.name]) for e in entries if e.name in shown]


def read(
    cp: ControlPlane,
    caller: Principal,
    permission: str,
    kind: str,
    name: str,
    *,
    version: str | None = None,
) -> tuple[Entry, str]:
    """One object at its latest version or the one asked for, with its folder."""
    folder = access.guard(cp, caller, permission, kind, name)
    return cp.catalog.get(kind, name, version), folder


def history(
    cp: ControlPlane, caller: Principal, permission: str, kind: str, name: str
) -> list[VersionPublic]:
    """Every version of an object, newest first."""
    access.guard(cp, caller, permission, kind, name)
    return [to_version(v) for v in cp.catalog.history(kind, name)]


def delete(
    cp: ControlPlane,
    caller: Principal,
    permission: str,
    kind: str,
    name: str,
    *,
    author: str | None,
    message: str,
) -> VersionPublic:
    """Delete an object as the caller, audited; the deletion is a commit, so history stays."""
    access.guard(cp, caller, permission, kind, name)
    return to_version(
        auditing.delete(
            cp.store,
            cp.catalog,
            kind,
            name,
            author=access.author_of(caller, author),
            message=message or f"delete {name}",
            actor=caller.actor,
        )
    )
