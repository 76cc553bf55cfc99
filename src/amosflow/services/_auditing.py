"""Audit records for changes that do not live in the store's own transactions.

Catalog changes are Git commits: each is kept only once its audit record is durable, and
undone when the record cannot be written, so the call fails (503) and nothing changed
without its record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amosflow import audit
from amosflow.store import INSTALL_FOLDER, folders

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import Session

    from amosflow.catalog import Catalog, Version
    from amosflow.identity import Principal
    from amosflow.store import Store

API_ACTOR = "api"


def record(
    store: Store,
    *,
    action: str,
    resource: str,
    details: dict[str, Any],
    actor: str = API_ACTOR,
    folder: str = INSTALL_FOLDER,
) -> None:
    """Append one audit record in its own transaction (install-wide unless a folder is named)."""
    with store.session() as session:
        audit.append(
            session, actor=actor, action=action, resource=resource, folder=folder, details=details
        )


def by_caller(
    session: Session, caller: Principal, action: str, resource: str, **details: Any
) -> None:
    """Append one record of ``caller``'s install-wide change in the caller's transaction."""
    audit.append(
        session,
        actor=caller.actor,
        action=action,
        resource=resource,
        folder=INSTALL_FOLDER,
        details=details,
    )


def _version_details(version: Version, author: str, message: str) -> dict[str, Any]:
    return {
        "commit": version.commit,
        "content_hash": version.content_hash,
        "author": author,
        "message": message,
    }


def committed(
    store: Store,
    catalog: Catalog,
    kind: str,
    name: str,
    version: Version,
    *,
    folder: str,
    record: Callable[[Session], None],
) -> Version:
    """Keep a catalog commit only once its audit record is durable; take it back otherwise.

    The record names the commit, so the commit comes first; when the record cannot be
    written the commit is undone and the caller gets the AuditError (503): no change stays
    without its record.
    """

    def durable() -> None:
        with store.session() as session:
            record(session)

    return catalog.keep_if(kind, name, version, folder=folder, durable=durable)


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
    folder: str,
) -> Version:
    """Save a catalog object into ``folder`` and audit it as `<kind>.save`."""
    with store.session(read_only=True) as session:
        folders.require_folder(session, folder)
    version = catalog.save(kind, name, document, folder=folder, author=author, message=message)
    details = _version_details(version, author, message)

    def audit_it(session: Session) -> None:
        audit.append(
            session,
            actor=actor,
            action=f"{kind}.save",
            resource=f"{kind}/{name}",
            folder=folder,
            details=details,
        )

    return committed(store, catalog, kind, name, version, folder=folder, record=audit_it)


def delete(
    store: Store,
    catalog: Catalog,
    kind: str,
    name: str,
    *,
    folder: str,
    author: str,
    message: str,
    actor: str = API_ACTOR,
) -> Version:
    """Delete a catalog object (a commit) and audit it, in its folder, as `<kind>.delete`."""
    version = catalog.delete(kind, name, folder=folder, author=author, message=message)
    details = _version_details(version, author, message)

    def audit_it(session: Session) -> None:
        audit.append(
            session,
            actor=actor,
            action=f"{kind}.delete",
            resource=f"{kind}/{name}",
            folder=folder,
            details=details,
        )

    return committed(store, catalog, kind, name, version, folder=folder, record=audit_it)
