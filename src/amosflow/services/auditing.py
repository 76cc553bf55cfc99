"""Audit records for changes that do not live in the store's own transactions.

Catalog changes are Git commits and secret changes happen inside the vault; their audit
records are appended right after the change succeeds, in a transaction of their own, and an
audit store that cannot be written fails the call (503) so nobody believes it was recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amosflow import audit

if TYPE_CHECKING:
    from amosflow.catalog import Catalog, Version
    from amosflow.store import Store

API_ACTOR = "api"


def record(
    store: Store, *, action: str, resource: str, details: dict[str, Any], actor: str = API_ACTOR
) -> None:
    """Append one audit record in its own transaction."""
    with store.session() as session:
        audit.append(session, actor=actor, action=action, resource=resource, details=details)


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
) -> Version:
    """Save a catalog object and audit it as `<kind>.save`."""
    version = catalog.save(kind, name, document, author=author, message=message)
    details = _version_details(version, author, message)
    record(store, action=f"{kind}.save", resource=f"{kind}/{name}", details=details)
    return version


def delete(
    store: Store, catalog: Catalog, kind: str, name: str, *, author: str, message: str
) -> Version:
    """Delete a catalog object (a commit) and audit it as `<kind>.delete`."""
    version = catalog.delete(kind, name, author=author, message=message)
    details = _version_details(version, author, message)
    record(store, action=f"{kind}.delete", resource=f"{kind}/{name}", details=details)
    return version
