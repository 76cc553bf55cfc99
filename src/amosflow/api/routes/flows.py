"""/api/v1/flows: the flow catalog, versioned in Git."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from amosflow.api import problems
from amosflow.api.deps import ControlPlaneDep
from amosflow.api.schemas import (
    DiffPublic,
    FlowCreate,
    FlowDelete,
    FlowPublic,
    FlowSummary,
    VersionPublic,
)
from amosflow.errors import ConflictError, Diagnostic, NotFoundError, ValidationFailedError
from amosflow.services import auditing

router = APIRouter(prefix="/api/v1/flows", tags=["flows"], responses=problems.RESPONSES)
KIND = "flows"
VersionQuery = Annotated[
    str | None, Query(description="Commit, commit prefix or content hash; latest when absent.")
]


def _version(version: object) -> VersionPublic:
    return VersionPublic.model_validate(version, from_attributes=True)


def _name_of(body: FlowCreate) -> str:
    name = body.document.get("name")
    if not isinstance(name, str):
        raise ValidationFailedError([Diagnostic("/document/name", "a flow needs a name")])
    return name


@router.post("", status_code=status.HTTP_201_CREATED, response_model=FlowPublic)
def create_flow(body: FlowCreate, cp: ControlPlaneDep) -> FlowPublic:
    """Save a new flow; a name that exists already is a conflict (use PUT to update)."""
    name = _name_of(body)
    try:
        cp.catalog.get(KIND, name)
    except NotFoundError:
        pass
    else:
        raise ConflictError(f"flow {name!r} already exists; update it with PUT")
    version = auditing.save(
        cp.store,
        cp.catalog,
        KIND,
        name,
        body.document,
        author=body.author,
        message=body.message or f"create {name}",
    )
    return FlowPublic(name=name, document=body.document, version=_version(version))


@router.put("/{name}", response_model=FlowPublic)
def update_flow(name: str, body: FlowCreate, cp: ControlPlaneDep) -> FlowPublic:
    """Save a new version of a flow (or create it); the document's name must match."""
    if _name_of(body) != name:
        raise ValidationFailedError(
            [Diagnostic("/document/name", f"must be {name!r}, the name in the path")]
        )
    version = auditing.save(
        cp.store,
        cp.catalog,
        KIND,
        name,
        body.document,
        author=body.author,
        message=body.message or f"update {name}",
    )
    return FlowPublic(name=name, document=body.document, version=_version(version))


@router.get("", response_model=list[FlowSummary])
def list_flows(cp: ControlPlaneDep) -> list[FlowSummary]:
    """Every flow at its latest version, by name."""
    return [
        FlowSummary(
            name=e.name, description=e.document.get("description"), version=_version(e.version)
        )
        for e in cp.catalog.list(KIND)
    ]


@router.get("/{name}", response_model=FlowPublic)
def get_flow(name: str, cp: ControlPlaneDep, version: VersionQuery = None) -> FlowPublic:
    """A flow at its latest version, or at the version asked for."""
    entry = cp.catalog.get(KIND, name, version)
    return FlowPublic(name=entry.name, document=entry.document, version=_version(entry.version))


@router.get("/{name}/history", response_model=list[VersionPublic])
def flow_history(name: str, cp: ControlPlaneDep) -> list[VersionPublic]:
    """Every version of a flow, newest first."""
    return [_version(v) for v in cp.catalog.history(KIND, name)]


@router.get("/{name}/diff", response_model=DiffPublic)
def flow_diff(
    name: str,
    cp: ControlPlaneDep,
    from_version: Annotated[str, Query(alias="from", description="Older version.")],
    to_version: Annotated[str, Query(alias="to", description="Newer version.")],
) -> DiffPublic:
    """A unified diff between two versions of a flow."""
    text = cp.catalog.diff(KIND, name, from_version, to_version)
    return DiffPublic(name=name, from_version=from_version, to_version=to_version, diff=text)


@router.delete("/{name}", response_model=VersionPublic)
def delete_flow(name: str, cp: ControlPlaneDep, body: FlowDelete | None = None) -> VersionPublic:
    """Delete a flow; the deletion is a commit, so its history stays."""
    body = body or FlowDelete()
    return _version(
        auditing.delete(
            cp.store,
            cp.catalog,
            KIND,
            name,
            author=body.author,
            message=body.message or f"delete {name}",
        )
    )
