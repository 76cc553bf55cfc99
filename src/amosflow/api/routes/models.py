"""/api/v1/models: model definitions for AI steps, versioned in Git like flows and configs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from amosflow.ai.models import KIND
from amosflow.api import access, problems
from amosflow.api.deps import ControlPlaneDep
from amosflow.api.schemas import FOLDER_PATTERN, VersionPublic
from amosflow.api.security import CallerDep
from amosflow.errors import Diagnostic, ValidationFailedError
from amosflow.services import auditing

router = APIRouter(prefix="/api/v1", tags=["models"], responses=problems.RESPONSES)


class ModelCreate(BaseModel):
    """A model definition to save, with the commit message."""

    model_config = ConfigDict(extra="forbid")

    document: dict[str, Any] = Field(
        description=(
            "The definition: name, base_url (OpenAI-compatible), model, revision, and"
            " optionally parameters, budget_run_tokens, budget_folder_tokens, timeout_s,"
            " api_key_secret."
        )
    )
    message: str = Field(default="", max_length=2000, description="Commit message.")
    author: str | None = Field(
        default=None, max_length=200, description="Commit author; the caller when absent."
    )
    folder: str | None = Field(
        default=None,
        pattern=FOLDER_PATTERN,
        description="Folder of the model; `default` models serve every folder.",
    )


class ModelPublic(BaseModel):
    """A model definition as stored in the catalog, at one version."""

    name: str
    folder: str
    document: dict[str, Any]
    version: VersionPublic


class ModelDelete(BaseModel):
    """Who deletes a model definition, and why."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(default="", max_length=2000)
    author: str | None = Field(default=None, max_length=200)


def _version(version: object) -> VersionPublic:
    return VersionPublic.model_validate(version, from_attributes=True)


@router.put("/models/{name}", response_model=ModelPublic)
def save_model(name: str, body: ModelCreate, cp: ControlPlaneDep, caller: CallerDep) -> ModelPublic:
    """Save a new version of a model definition (or create it); its name must match."""
    if body.document.get("name") != name:
        raise ValidationFailedError(
            [Diagnostic("/document/name", f"must be {name!r}, the name in the path")]
        )
    folder = access.guard_write(cp, caller, KIND, name, body.folder)
    version = auditing.save(
        cp.store,
        cp.catalog,
        KIND,
        name,
        body.document,
        author=access.author_of(caller, body.author),
        message=body.message or f"save {name}",
        actor=caller.actor,
        folder=folder,
    )
    return ModelPublic(name=name, folder=folder, document=body.document, version=_version(version))


@router.get("/models", response_model=list[ModelPublic])
def list_models(cp: ControlPlaneDep, caller: CallerDep) -> list[ModelPublic]:
    """Every model definition the caller may read, at its latest version, by name."""
    entries = cp.catalog.list(KIND)
    shown = access.visible(cp, caller, KIND, (e.name for e in entries))
    return [
        ModelPublic(
            name=e.name, folder=shown[e.name], document=e.document, version=_version(e.version)
        )
        for e in entries
        if e.name in shown
    ]


@router.get("/models/{name}", response_model=ModelPublic)
def get_model(name: str, cp: ControlPlaneDep, caller: CallerDep) -> ModelPublic:
    """A model definition at its latest version."""
    folder = access.guard(cp, caller, "models.read", KIND, name)
    entry = cp.catalog.get(KIND, name)
    return ModelPublic(
        name=entry.name, folder=folder, document=entry.document, version=_version(entry.version)
    )


@router.get("/models/{name}/history", response_model=list[VersionPublic])
def model_history(name: str, cp: ControlPlaneDep, caller: CallerDep) -> list[VersionPublic]:
    """Every version of a model definition, newest first."""
    access.guard(cp, caller, "models.read", KIND, name)
    return [_version(v) for v in cp.catalog.history(KIND, name)]


@router.delete("/models/{name}", response_model=VersionPublic)
def delete_model(
    name: str, cp: ControlPlaneDep, caller: CallerDep, body: ModelDelete | None = None
) -> VersionPublic:
    """Delete a model definition; the deletion is a commit, so its history stays."""
    access.guard(cp, caller, "models.write", KIND, name)
    body = body or ModelDelete()
    return _version(
        auditing.delete(
            cp.store,
            cp.catalog,
            KIND,
            name,
            author=access.author_of(caller, body.author),
            message=body.message or f"delete {name}",
            actor=caller.actor,
        )
    )
