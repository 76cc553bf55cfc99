"""Request and response bodies: `XCreate` in, `XPublic` out."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FOLDER_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
RunStatus = Literal["pending", "running", "completed", "failed", "cancelled", "timed_out"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VersionPublic(BaseModel):
    """One saved version of a catalog object."""

    commit: str = Field(description="Git commit that saved this version.")
    content_hash: str = Field(description="sha256 of the document's RFC 8785 canonical JSON.")
    author: str
    message: str
    committed_at: datetime


class CatalogSave(_Body):
    """What every save of a catalog object carries besides its document."""

    message: str = Field(default="", max_length=2000, description="Commit message.")
    author: str | None = Field(
        default=None, max_length=200, description="Commit author; the caller when absent."
    )
    folder: str | None = Field(
        default=None,
        pattern=FOLDER_PATTERN,
        description=(
            "Folder whose namespace the object is saved in. When absent: the one folder where"
            " you see the name already, else the only folder you may write in, else `default`."
        ),
    )


class CatalogDelete(_Body):
    """Who deletes a catalog object, and why."""

    message: str = Field(default="", max_length=2000)
    author: str | None = Field(default=None, max_length=200)


class CatalogObject(BaseModel):
    """A catalog object as stored, at one version."""

    name: str
    folder: str
    document: dict[str, Any]
    version: VersionPublic


class FlowCreate(CatalogSave):
    """A flow document to save, with the commit message."""

    document: dict[str, Any] = Field(description="The amos.flow/v1 document.")


class FlowPublic(CatalogObject):
    """A flow as stored in the catalog, at one version."""


class FlowSummary(BaseModel):
    """A flow in a listing."""

    name: str
    folder: str
    description: str | None = None
    version: VersionPublic


class FlowDelete(CatalogDelete):
    """Who deletes a flow, and why."""


class DiffPublic(BaseModel):
    """A unified diff between two versions of a flow."""

    name: str
    from_version: str
    to_version: str
    diff: str


class RunCreate(_Body):
    """Start a run of a catalog flow."""

    flow: str = Field(description="Flow name in the catalog.", min_length=1, max_length=63)
    version: str | None = Field(
        default=None, description="Commit, commit prefix or content hash; latest when absent."
    )
    inputs: dict[str, Any] = Field(default_factory=dict, description="Run inputs.")
    environment: str | None = Field(default=None, description="Config environment layer.")
    start_at: datetime | None = Field(default=None, description="Deferred start time.")
    run_id: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9._-]{0,99}:[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
        max_length=128,
        description=(
            "Run id to use, `<the flow's folder>:<your key>`; the same id never starts a"
            " second run. Random when absent."
        ),
    )
    folder: str | None = Field(
        default=None,
        pattern=FOLDER_PATTERN,
        description="Folder of the flow; needed only when you see its name in several.",
    )


class RunPublic(BaseModel):
    """A run: what started it, with which pinned versions, and how it ended."""

    run_id: str
    flow: str
    flow_version: str
    flow_hash: str
    config_hash: str
    status: RunStatus
    trigger: str
    trigger_ref: str | None = None
    folder: str = "default"
    started_by: str | None = None
    inputs: dict[str, Any]
    output: Any = None
    error: dict[str, Any] | None = None
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None


class RunDetail(RunPublic):
    """A run with its per-step timeline from the workflow."""

    steps: dict[str, dict[str, Any]] = Field(default_factory=dict)


class RunPage(BaseModel):
    """One page of runs, newest first."""

    items: list[RunPublic]
    next_cursor: str | None = None


class Health(BaseModel):
    """Liveness or readiness, with the state of each dependency."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


class ConfigCreate(CatalogSave):
    """A config bundle to save, with the commit message."""

    document: dict[str, Any] = Field(
        description="The config bundle: name, layer (base, environment, trigger), values."
    )


class ConfigPublic(CatalogObject):
    """A config bundle as stored in the catalog, at one version."""


class ConfigDelete(CatalogDelete):
    """Who deletes a config bundle, and why."""


class ConfigSource(BaseModel):
    """One bundle that went into an Effective Config, in merge order."""

    name: str
    commit: str


class EffectiveConfigPublic(BaseModel):
    """The merged config a run would get, its hash and the bundles it came from."""

    values: dict[str, Any]
    sha256: str = Field(description="sha256 of the RFC 8785 canonical JSON of the values.")
    sources: list[ConfigSource]
