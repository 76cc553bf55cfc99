"""/api/v1/configs: layered config bundles in Git, and the Effective Config they merge into."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from amosflow.api import catalog_objects as objects
from amosflow.api import problems
from amosflow.api.deps import ControlPlaneDep
from amosflow.api.schemas import (
    FOLDER_PATTERN,
    ConfigCreate,
    ConfigDelete,
    ConfigPublic,
    ConfigSource,
    EffectiveConfigPublic,
    VersionPublic,
)
from amosflow.api.security import CallerDep
from amosflow.catalog import effective_config
from amosflow.identity.policy import authorize

router = APIRouter(prefix="/api/v1", tags=["configs"], responses=problems.RESPONSES)
KIND = "configs"
VersionQuery = Annotated[
    str | None, Query(description="Commit, commit prefix or content hash; latest when absent.")
]
LayerQuery = Annotated[str | None, Query(max_length=63, description="Layer to include.")]


@router.put("/configs/{name}", response_model=ConfigPublic)
def save_config(
    name: str, body: ConfigCreate, cp: ControlPlaneDep, caller: CallerDep
) -> ConfigPublic:
    """Save a new version of a config bundle (or create it); the bundle's name must match."""
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
    return ConfigPublic(name=name, folder=folder, document=body.document, version=version)


@router.get("/configs", response_model=list[ConfigPublic])
def list_configs(
    cp: ControlPlaneDep, caller: CallerDep, folder: objects.FolderQuery = None
) -> list[ConfigPublic]:
    """Every config bundle the caller may read (in ``folder`` only, when given)."""
    return [
        ConfigPublic(
            name=e.name, folder=e.folder, document=e.document, version=objects.to_version(e.version)
        )
        for e in objects.readable(cp, caller, KIND, folder)
    ]


@router.get("/configs/{name}", response_model=ConfigPublic)
def get_config(
    name: str,
    cp: ControlPlaneDep,
    caller: CallerDep,
    version: VersionQuery = None,
    folder: objects.FolderQuery = None,
) -> ConfigPublic:
    """A config bundle at its latest version, or at the version asked for."""
    entry = objects.read(cp, caller, "configs.read", KIND, name, folder=folder, version=version)
    return ConfigPublic(
        name=entry.name,
        folder=entry.folder,
        document=entry.document,
        version=objects.to_version(entry.version),
    )


@router.get("/configs/{name}/history", response_model=list[VersionPublic])
def config_history(
    name: str, cp: ControlPlaneDep, caller: CallerDep, folder: objects.FolderQuery = None
) -> list[VersionPublic]:
    """Every version of a config bundle, newest first."""
    return objects.history(cp, caller, "configs.read", KIND, name, folder=folder)


@router.delete("/configs/{name}", response_model=VersionPublic)
def delete_config(
    name: str,
    cp: ControlPlaneDep,
    caller: CallerDep,
    body: ConfigDelete | None = None,
    folder: objects.FolderQuery = None,
) -> VersionPublic:
    """Delete a config bundle; the deletion is a commit, so its history stays."""
    body = body or ConfigDelete()
    return objects.delete(
        cp,
        caller,
        "configs.write",
        KIND,
        name,
        folder=folder,
        author=body.author,
        message=body.message,
    )


@router.get("/config/effective", response_model=EffectiveConfigPublic)
def get_effective_config(
    cp: ControlPlaneDep,
    caller: CallerDep,
    environment: LayerQuery = None,
    trigger: LayerQuery = None,
    folder: Annotated[
        str, Query(pattern=FOLDER_PATTERN, description="The folder whose runs' view to show.")
    ] = "default",
) -> EffectiveConfigPublic:
    """The config a run of ``folder`` would get: its base, environment and trigger bundles."""
    authorize(caller, "configs.read", folder=folder, missing=f"folder {folder!r} not found")
    config = effective_config(cp.catalog, environment=environment, trigger=trigger, folder=folder)
    return EffectiveConfigPublic(
        values=config.to_dict(),
        sha256=config.sha256,
        sources=[ConfigSource(name=name, commit=commit) for name, commit in config.sources],
    )
