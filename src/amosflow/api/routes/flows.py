"""/api/v1/flows: the flow catalog, versioned in Git, filed in folders."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query, status

from amosflow.api import _catalog_objects as objects
from amosflow.api import _problems as problems
from amosflow.api._catalog_routes import CatalogKind, add_catalog_routes
from amosflow.api._deps import ControlPlaneDep
from amosflow.api._schemas import (
    DiffPublic,
    FlowCreate,
    FlowDelete,
    FlowPublic,
    FlowSummary,
)
from amosflow.api._security import CallerDep
from amosflow.errors import ConflictError, Diagnostic, ValidationFailedError
from amosflow.services import access

if TYPE_CHECKING:
    from amosflow.catalog import Entry

router = APIRouter(prefix="/api/v1/flows", tags=["flows"], responses=problems.RESPONSES)
KIND = "flows"


def _name_of(body: FlowCreate) -> str:
    name = body.document.get("name")
    if not isinstance(name, str):
        raise ValidationFailedError([Diagnostic("/document/name", "a flow needs a name")])
    return name


def _save(
    cp: ControlPlaneDep, caller: CallerDep, name: str, body: FlowCreate, verb: str
) -> FlowPublic:
    folder, version = objects.save(
        cp,
        caller,
        KIND,
        name,
        body.document,
        folder=body.folder,
        author=body.author,
        message=body.message or f"{verb} {name}",
    )
    return FlowPublic(name=name, folder=folder, document=body.document, version=version)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=FlowPublic)
def create_flow(body: FlowCreate, cp: ControlPlaneDep, caller: CallerDep) -> FlowPublic:
    """Save a new flow; a name its folder holds already is a conflict (use PUT to update)."""
    name = _name_of(body)
    folder = access.write_guard(cp, caller, KIND, name, body.folder)
    if cp.catalog.exists(KIND, name, folder=folder):
        raise ConflictError(
            f"flow {name!r} already exists in folder {folder!r}; update it with PUT"
        )
    return _save(cp, caller, name, body.model_copy(update={"folder": folder}), "create")


@router.put("/{name}", response_model=FlowPublic)
def update_flow(name: str, body: FlowCreate, cp: ControlPlaneDep, caller: CallerDep) -> FlowPublic:
    """Save a new version of a flow (or create it); the document's name must match."""
    _name_of(body)  # a document without a name gets its own message first
    objects.require_path_name(name, body.document)
    return _save(cp, caller, name, body, "update")


FLOWS = CatalogKind(
    kind=KIND,
    path="",
    singular="flow",
    noun="flow",
    public=FlowPublic,
    delete_body=FlowDelete,
    history_note=" (a deleted flow's too)",
    delete_note=" in its folder",
)


def _summary(entry: Entry) -> FlowSummary:
    return FlowSummary(
        name=entry.name,
        folder=entry.folder,
        description=entry.document.get("description"),
        version=objects.to_version(entry.version),
    )


add_catalog_routes(
    router,
    FLOWS,
    listed=FlowSummary,
    summarize=_summary,
    list_doc="Every flow the caller may read (in ``folder`` only, when given), at its latest"
    " version.",
)


@router.get("/{name}/diff", response_model=DiffPublic)
def flow_diff(
    name: str,
    cp: ControlPlaneDep,
    caller: CallerDep,
    *,
    from_version: Annotated[str, Query(alias="from", description="Older version.")],
    to_version: Annotated[str, Query(alias="to", description="Newer version.")],
    folder: objects.FolderQuery = None,
) -> DiffPublic:
    """A unified diff between two versions of a flow."""
    found = access.guard(cp, caller, "flows.read", KIND, name, folder=folder, ever=True)
    text = cp.catalog.diff(KIND, name, from_version, to_version, folder=found)
    return DiffPublic(name=name, from_version=from_version, to_version=to_version, diff=text)
