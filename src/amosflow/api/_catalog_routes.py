"""One route factory for the catalog kinds: list, read, history and delete, the same for each.

Flows, config bundles and model definitions differ in their documents and in what saving
one means, not in how they are listed, read, versioned and deleted; this module makes those
four routes for a kind, with the names and texts each kind's API has always had.

Annotations here are evaluated at definition time (no postponed evaluation): the routes are
made in a closure, and FastAPI reads their parameters from the function signatures.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query

from amosflow.api import _catalog_objects as objects
from amosflow.api._deps import ControlPlaneDep
from amosflow.api._schemas import CatalogDelete, CatalogObject, VersionPublic
from amosflow.api._security import CallerDep
from amosflow.catalog import Entry

__all__ = ["CatalogKind", "VersionQuery", "add_catalog_routes", "public_of"]

VersionQuery = Annotated[
    str | None, Query(description="Commit, commit prefix or content hash; latest when absent.")
]


@dataclass(frozen=True)
class CatalogKind:
    """What the routes of one kind are called and say."""

    kind: str
    """The catalog kind, e.g. ``flows``; permissions are ``<kind>.read`` and ``<kind>.write``."""
    path: str
    """The routes' path below the router's prefix: ``""`` or ``"/configs"``."""
    singular: str
    """How route functions are named: ``get_<singular>``, ``<singular>_history`` …"""
    noun: str
    """How docstrings speak of one object: ``flow``, ``config bundle``."""
    public: type[CatalogObject]
    delete_body: type[CatalogDelete]
    versioned_get: bool = True
    history_note: str = ""
    delete_note: str = ""


def public_of(kind: CatalogKind, entry: Entry) -> CatalogObject:
    """The public form of an entry of ``kind``."""
    return kind.public(
        name=entry.name,
        folder=entry.folder,
        document=entry.document,
        version=objects.to_version(entry.version),
    )


def add_catalog_routes(
    router: APIRouter,
    kind: CatalogKind,
    *,
    listed: Any,
    summarize: Callable[[Entry], Any],
    list_doc: str,
) -> None:
    """Add ``GET ``, ``GET /{name}``, ``GET /{name}/history`` and ``DELETE /{name}`` for ``kind``.

    ``listed`` is the model of one item of the listing and ``summarize`` makes it.
    """
    public, delete_body, name_of = kind.public, kind.delete_body, kind.singular

    def list_objects(
        cp: ControlPlaneDep, caller: CallerDep, folder: objects.FolderQuery = None
    ) -> list[Any]:
        return [summarize(e) for e in objects.readable(cp, caller, kind.kind, folder)]

    def get_versioned(
        name: str,
        cp: ControlPlaneDep,
        caller: CallerDep,
        version: VersionQuery = None,
        folder: objects.FolderQuery = None,
    ) -> Any:
        read = f"{kind.kind}.read"
        entry = objects.read(cp, caller, read, kind.kind, name, folder=folder, version=version)
        return public_of(kind, entry)

    def get_latest(
        name: str, cp: ControlPlaneDep, caller: CallerDep, folder: objects.FolderQuery = None
    ) -> Any:
        entry = objects.read(cp, caller, f"{kind.kind}.read", kind.kind, name, folder=folder)
        return public_of(kind, entry)

    def history(
        name: str, cp: ControlPlaneDep, caller: CallerDep, folder: objects.FolderQuery = None
    ) -> list[VersionPublic]:
        return objects.history(cp, caller, f"{kind.kind}.read", kind.kind, name, folder=folder)

    def delete(
        name: str,
        cp: ControlPlaneDep,
        caller: CallerDep,
        body: delete_body | None = None,  # type: ignore[valid-type]
        folder: objects.FolderQuery = None,
    ) -> VersionPublic:
        given = body or delete_body()
        return objects.delete(
            cp,
            caller,
            f"{kind.kind}.write",
            kind.kind,
            name,
            folder=folder,
            author=given.author,
            message=given.message,
        )

    get_one = get_versioned if kind.versioned_get else get_latest
    get_doc = (
        f"A {kind.noun} at its latest version, or at the version asked for."
        if kind.versioned_get
        else f"A {kind.noun} at its latest version."
    )
    routes: list[tuple[Callable[..., Any], str, str, str, str, Any]] = [
        (list_objects, f"list_{kind.kind}", "GET", "", list_doc, list[listed]),
        (get_one, f"get_{name_of}", "GET", "/{name}", get_doc, public),
        (
            history,
            f"{name_of}_history",
            "GET",
            "/{name}/history",
            f"Every version of a {kind.noun}, newest first{kind.history_note}.",
            list[VersionPublic],
        ),
        (
            delete,
            f"delete_{name_of}",
            "DELETE",
            "/{name}",
            (
                f"Delete a {kind.noun}; the deletion is a commit, so its history stays"
                f"{kind.delete_note}."
            ),
            VersionPublic,
        ),
    ]
    for endpoint, function_name, method, suffix, doc, response in routes:
        endpoint.__name__ = endpoint.__qualname__ = function_name
        endpoint.__doc__ = doc
        router.add_api_route(
            kind.path + suffix, endpoint, methods=[method], response_model=response
        )
