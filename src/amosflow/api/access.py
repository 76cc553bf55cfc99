"""Folder-aware access to catalog objects for the routes: the policy decides, these look up.

Every catalog route asks the same two questions — which folder is this object in, and may
the caller do this there — and every list drops what the caller may not see. Keeping them
here means no route ever compares a role or a folder by hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amosflow.errors import NotFoundError
from amosflow.identity.policy import authorize, folder_scope
from amosflow.store import folders

if TYPE_CHECKING:
    from collections.abc import Iterable

    from amosflow.identity.principal import Principal
    from amosflow.services.runs import ControlPlane


def missing(kind: str, name: str) -> str:
    """The one message for an object that does not exist or is in a folder the caller can't see."""
    return f"no {kind} named {name!r} in the catalog"


def catalog_folder(cp: ControlPlane, kind: str, name: str) -> str:
    """The folder a catalog object is filed under (`default` when never filed)."""
    with cp.store.session(read_only=True) as session:
        return folders.folder_of(session, kind, name)


def guard(cp: ControlPlane, caller: Principal, permission: str, kind: str, name: str) -> str:
    """Authorize ``permission`` on one catalog object and return its folder."""
    folder = catalog_folder(cp, kind, name)
    authorize(caller, permission, folder=folder, missing=missing(kind, name))
    return folder


def exists(cp: ControlPlane, kind: str, name: str) -> bool:
    """Whether the catalog holds ``name`` at its latest version."""
    try:
        cp.catalog.get(kind, name)
    except NotFoundError:
        return False
    return True


def guard_write(
    cp: ControlPlane, caller: Principal, kind: str, name: str, wanted: str | None
) -> str:
    """Authorize saving an object: in its current folder and, when it moves, in the new one.

    Returns the folder the object is saved into: the one asked for, else where it is now
    (`default` for a new object).
    """
    permission = f"{kind}.write"
    if not exists(cp, kind, name):
        target = wanted or "default"
        authorize(caller, permission, folder=target, missing=f"folder {target!r} not found")
        return target
    current = catalog_folder(cp, kind, name)
    authorize(caller, permission, folder=current, missing=missing(kind, name))
    if wanted is not None and wanted != current:
        authorize(caller, permission, folder=wanted, missing=f"folder {wanted!r} not found")
        return wanted
    return current


def visible(cp: ControlPlane, caller: Principal, kind: str, names: Iterable[str]) -> dict[str, str]:
    """Name → folder of the objects among ``names`` the caller may read."""
    scope = folder_scope(caller, f"{kind}.read")
    with cp.store.session(read_only=True) as session:
        filed = folders.folders_of(session, kind)
    placed = {name: filed.get(name, "default") for name in names}
    return {name: folder for name, folder in placed.items() if folder in scope}


def author_of(caller: Principal, given: str | None) -> str:
    """The Git author of a change: what the caller wrote, else the caller itself."""
    return given or f"{caller.username} <{caller.username}@amosflow.local>"
