"""/api/v1/models: model definitions for AI steps, versioned in Git like flows and configs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from amosflow.ai import KIND
from amosflow.api import _catalog_objects as objects
from amosflow.api import _problems as problems
from amosflow.api._catalog_routes import CatalogKind, add_catalog_routes, public_of
from amosflow.api._deps import ControlPlaneDep
from amosflow.api._schemas import CatalogDelete, CatalogObject, CatalogSave
from amosflow.api._security import CallerDep

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


MODELS = CatalogKind(
    kind=KIND,
    path="/models",
    singular="model",
    noun="model definition",
    public=ModelPublic,
    delete_body=ModelDelete,
    versioned_get=False,
)
add_catalog_routes(
    router,
    MODELS,
    listed=ModelPublic,
    summarize=lambda entry: public_of(MODELS, entry),
    list_doc="Every model definition the caller may read (in ``folder`` only, when given).",
)
