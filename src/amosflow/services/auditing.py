"""Audit records for changes that do not live in the store's own transactions.

Catalog changes are Git commits and secret changes happen inside the vault; their audit
records are appended right after the change succeeds, in a transaction of their own, and an
audit store that cannot be written fails the call (503) so nobody believes it was recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amosflow import audit
from amosflow.store import folders

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from amosflow.catalog import Catalog, Version
    from amosflow.identity.principal import Principal
    from amosflow.store import Store

API_ACTOR = "api"


def record(
    store: Store,
    *,
    action: str,
    resource: str,
    details: dict[str, Any],
    actor: str = API_ACTOR,
    folder: str = "default",
) -> None:
    """Append one audit record in its own transaction."""
    with store.session() as session:
        audit.append(
            session, actor=actor, action=action, resource=resource, folder=folder, details=details
        )


def by_caller(
    session: Session, caller: Principal, action: str, resource: str, **details: Any
) -> None:
    """Append one record of ``caller``'s change in the caller's transaction."""
    audit.append(session, actor=caller.actor, action=action, resource=resource, details=details)


def _version_details(version: Version, author: str, message: str) -> dict[str, Any]:
    return {
        "commit": version.commit,
        "content_hash": version.content_hash,
        "author": author,
        "message": message,
    }


def save(
    store: Store,
    catalog: Catalog,
    kind: str,
    name: str,
    document: dict[str, Any],
    *,
    author: str,
    message: str,
    actor: str = API_ACTOR,
    folder: str = "default",
) -> Version:
    """Save a catalog object into ``folder`` and audit it as `<kind>.save`."""
    with store.session(read_only=True) as session:
        folders.require_folder(session, folder)
    version = catalog.save(kind, name, document, author=author, message=message)
    details = _version_details(version, author, message)
    with store.session() as session:
        folders.file_under(session, kind, name, folder)
        audit.append(
            session,
            actor=actor,
            action=f"{kind}.save",
            resource=f"{kind}/{name}",
            folder=folder,
            details=details,
        )
    return version


def delete(
    store: Store,
    catalog: Catalog,
    kind: str,
    name: str,
    *,
    author: str,
    message: str,
    actor: str = API_ACTOR,
) -> Version:
    """Delete a catalog object (a commit) and audit it as `<kind>.delete`."""
    version = catalog.delete(kind, name, author=author, message=message)
    details = _version_details(version, author, message)
    with store.session() as session:
        folder = folders.folder_of(session, kind, name)
        folders.forget(session, kind, name)
        audit.append(
            session,
            actor=actor,
            action=f"{kind}.delete",
            resource=f"{kind}/{name}",
            folder=folder,
            details=details,
        )
    return version
