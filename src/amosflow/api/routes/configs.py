"""/api/v1/configs: layered config bundles in Git, and the Effective Config they merge into."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from amosflow.api import _catalog_objects as objects
from amosflow.api import _problems as problems
from amosflow.api._catalog_routes import CatalogKind, add_catalog_routes, public_of
from amosflow.api._deps import ControlPlaneDep
from amosflow.api._schemas import (
    FOLDER_PATTERN,
    ConfigCreate,
    ConfigDelete,
    ConfigPublic,
    ConfigSource,
    EffectiveConfigPublic,
)
from amosflow.api._security import CallerDep
from amosflow.catalog import effective_config
from amosflow.identity import authorize

router = APIRouter(prefix="/api/v1", tags=["configs"], responses=problems.RESPONSES)
KIND = "configs"
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


CONFIGS = CatalogKind(
    kind=KIND,
    path="/configs",
    singular="config",
    noun="config bundle",
    public=ConfigPublic,
    delete_body=ConfigDelete,
)
add_catalog_routes(
    router,
    CONFIGS,
    listed=ConfigPublic,
    summarize=lambda entry: public_of(CONFIGS, entry),
    list_doc="Every config bundle the caller may read (in ``folder`` only, when given).",
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
