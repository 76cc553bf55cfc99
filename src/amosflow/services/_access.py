"""Which object a caller means, and whether it may use it: the policy decides, these look up.

Every object lives in one folder's namespace. A caller names an object by its name and,
when it sees the name in more than one folder, by its folder too; a name is looked for only
in the folders the caller may read, so an object of any other folder is never found, never
in the way of a name the caller chooses, and answers exactly like one that does not exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amosflow.errors import ConflictError, NotFoundError
from amosflow.identity import authorize, folder_scope, sees

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from amosflow.identity import Principal
    from amosflow.services._runs import ControlPlane

#: The singular each kind is spoken of in messages.
_NOUNS = {
    "flows": "flow",
    "configs": "config bundle",
    "models": "model",
    "mcp-servers": "MCP server",
    "triggers": "trigger",
    "secrets": "secret",
}
#: The permission area of a kind, where it differs from the kind's name.
_AREAS = {"mcp-servers": "mcp"}


def missing(kind: str, name: str) -> str:
    """The one message for an object that does not exist or is in a folder the caller can't see.

    It is the catalog's own message for a missing object, word for word, so the body of a 404
    says nothing about why.
    """
    return f"no {kind} named {name!r}"


def reader(kind: str) -> str:
    """The permission that lets a caller see objects of ``kind``."""
    return f"{_AREAS.get(kind, kind)}.read"


def writer(kind: str) -> str:
    """The permission that lets a caller change objects of ``kind``."""
    return f"{_AREAS.get(kind, kind)}.write"


def locate(
    caller: Principal,
    kind: str,
    name: str,
    folder: str | None,
    holders: Callable[[], Iterable[str]],
) -> str:
    """The folder of the object ``name`` the caller means; NotFoundError when it sees none.

    With ``folder`` given, that folder, if the caller may read it (the object itself may be
    gone: its history stays there). Without it, the one folder among those the caller may
    read whose namespace holds ``name`` now (``holders`` lists them all); several are a
    conflict naming them, all of them readable. Nothing of a folder the caller may not read
    is consulted, so the answer is the same whether such an object exists or not. This only
    finds the object: the caller then authorizes what it wants to do with it.
    """
    if folder is None:
        scope = folder_scope(caller, reader(kind))
        seen = [f for f in holders() if f in scope]
        if not seen:
            raise NotFoundError(missing(kind, name))
        if len(seen) > 1:
            raise ConflictError(
                f"{_NOUNS.get(kind, kind)} {name!r} exists in folders {', '.join(seen)}; name"
                " the one you mean with ?folder="
            )
        folder = seen[0]
    elif not sees(caller, reader(kind), folder):
        raise NotFoundError(missing(kind, name))
    return folder


def guard(
    cp: ControlPlane,
    caller: Principal,
    permission: str,
    kind: str,
    name: str,
    *,
    folder: str | None = None,
    ever: bool = False,
) -> str:
    """Authorize ``permission`` on one catalog object the caller can see; return its folder.

    ``ever`` also finds an object that is gone now, for its history.
    """
    found = locate(
        caller,
        kind,
        name,
        folder,
        lambda: cp.catalog.folders_holding(kind, name, ever=ever),
    )
    authorize(caller, permission, folder=found, missing=missing(kind, name))
    return found


def writable_folder(
    caller: Principal,
    kind: str,
    name: str,
    wanted: str | None,
    holders: Callable[[], Iterable[str]],
) -> str:
    """The folder a save writes into, after authorizing ``<kind>.write`` there.

    The folder asked for; else the one folder where the caller sees the name already; else
    the only folder the caller may write this kind in; else ``default``. A folder the caller
    may not see answers like one that does not exist.
    """
    permission = writer(kind)
    target = wanted
    if target is None:
        scope = folder_scope(caller, reader(kind))
        seen = [f for f in holders() if f in scope]
        if len(seen) > 1:
            raise ConflictError(
                f"{_NOUNS.get(kind, kind)} {name!r} exists in folders {', '.join(seen)}; name"
                " the one to save with `folder`"
            )
        writable = folder_scope(caller, permission)
        if seen:
            target = seen[0]
        elif not writable.every and len(writable.folders) == 1:
            target = next(iter(writable.folders))
        else:
            target = "default"
    authorize(caller, permission, folder=target, missing=f"folder {target!r} not found")
    return target


def write_guard(
    cp: ControlPlane, caller: Principal, kind: str, name: str, wanted: str | None
) -> str:
    """``writable_folder`` for a catalog object."""
    return writable_folder(
        caller, kind, name, wanted, lambda: cp.catalog.folders_holding(kind, name)
    )


def visible_folders(caller: Principal, permission: str, folder: str | None) -> list[str] | None:
    """The folders a listing may show: None for all, or the ones the caller may read.

    With ``folder`` given, only that one (empty when the caller may not read it).
    """
    scope = folder_scope(caller, permission)
    if folder is not None:
        return [folder] if folder in scope else []
    return None if scope.every else sorted(scope.folders)


def author_of(caller: Principal, given: str | None) -> str:
    """The Git author of a change: what the caller wrote, else the caller itself."""
    return given or f"{caller.username} <{caller.username}@amosflow.local>"
