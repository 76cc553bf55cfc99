"""/api/v1/models: model definitions for AI steps, versioned in Git like flows and configs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from amosflow.ai.models import KIND
from amosflow.api import catalog_objects as objects
from amosflow.api import problems
from amosflow.api.deps import ControlPlaneDep
from amosflow.api.schemas import CatalogDelete, CatalogObject, CatalogSave, VersionPublic
from amosflow.api.security import CallerDep

router = APIRouter(prefix="/api/v1", tags=["models"], responses=problems.RESPONSES)


class ModelCreate(CatalogSave):
    """A model definition to save, with the commit message."""

    document: dict[str, Any] = Field(
        description=(
            "The definition: name, base_url (OpenAI-compatible), model, revision, and"
            " optionally parameters, budget_run_tokens, budget_folder_tokens, timeout_s,"
            " tool_calls, api_key_secret."
        )
    )


class ModelPublic(CatalogObject):
    """A model definition as stored in the catalog, at one version."""


class ModelDelete(CatalogDelete):
    """Who deletes a model definition, and why."""


@router.put("/models/{name}", response_model=ModelPublic)
def save_model(name: str, body: ModelCreate, cp: ControlPlaneDep, caller: CallerDep) -> ModelPublic:
    """Save a new version of a model definition (or create it); its name must match."""
    objects.require_path_name(name, body.document)
    folder, version = objects.save(
        cp,
        caller,
        KIND,
        name,
        body.document,
        folder=body.folder,
        author=body.author,
        message=body.message or f"save {name}",
    )
    return ModelPublic(name=name, folder=folder, document=body.document, version=version)


@router.get("/models", response_model=list[ModelPublic])
def list_models(
    cp: ControlPlaneDep, caller: CallerDep, folder: objects.FolderQuery = None
) -> list[ModelPublic]:
    """Every model definition the caller may read (in ``folder`` only, when given)."""
    return [
        ModelPublic(
            name=e.name, folder=e.folder, document=e.document, version=objects.to_version(e.version)
        )
        for e in objects.readable(cp, caller, KIND, folder)
    ]


@router.get("/models/{name}", response_model=ModelPublic)
def get_model(
    name: str, cp: ControlPlaneDep, caller: CallerDep, folder: objects.FolderQuery = None
) -> ModelPublic:
    """A model definition at its latest version."""
    entry = objects.read(cp, caller, "models.read", KIND, name, folder=folder)
    return ModelPublic(
        name=entry.name,
        folder=entry.folder,
        document=entry.document,
        version=objects.to_version(entry.version),
    )


@router.get("/models/{name}/history", response_model=list[VersionPublic])
def model_history(
    name: str, cp: ControlPlaneDep, caller: CallerDep, folder: objects.FolderQuery = None
) -> list[VersionPublic]:
    """Every version of a model definition, newest first."""
    return objects.history(cp, caller, "models.read", KIND, name, folder=folder)


@router.delete("/models/{name}", response_model=VersionPublic)
def delete_model(
    name: str,
    cp: ControlPlaneDep,
    caller: CallerDep,
    body: ModelDelete | None = None,
    folder: objects.FolderQuery = None,
) -> VersionPublic:
    """Delete a model definition; the deletion is a commit, so its history stays."""
    body = body or ModelDelete()
    return objects.delete(
        cp,
        caller,
        "models.write",
        KIND,
        name,
        folder=folder,
        author=body.author,
        message=body.message,
    )
