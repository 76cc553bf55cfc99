"""/api/v1/mcp-servers: MCP server definitions per folder, approved by an administrator."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from amosflow.ai import mcp
from amosflow.api import access, problems
from amosflow.api.deps import ControlPlaneDep
from amosflow.api.schemas import FOLDER_PATTERN, VersionPublic
from amosflow.api.security import CallerDep
from amosflow.errors import Diagnostic, ValidationFailedError
from amosflow.identity.policy import authorize, folder_scope
from amosflow.store import folders

router = APIRouter(prefix="/api/v1/mcp-servers", tags=["mcp"], responses=problems.RESPONSES)
KIND = mcp.KIND


class McpServerSave(BaseModel):
    """A server definition to save (without ``approval``: approving writes it)."""

    model_config = ConfigDict(extra="forbid")
    document: dict[str, Any] = Field(description="The definition: transport, command/url, policy.")
    message: str = Field(default="", max_length=2000)
    author: str | None = Field(default=None, max_length=200)
    folder: str | None = Field(
        default=None,
        pattern=FOLDER_PATTERN,
        description="Folder of the server; `default` for a new one, unchanged for an update.",
    )


class McpServerPublic(BaseModel):
    """A server definition as stored, with whether its approval still covers it."""

    name: str
    folder: str
    document: dict[str, Any]
    approved: bool = Field(description="True when an approval covers the current definition.")
    version: VersionPublic


def _public(name: str, folder: str, document: dict[str, Any], version: object) -> McpServerPublic:
    server = mcp.parse_server(document)
    approved = (
        server.approval is not None and server.approval.definition == server.definition_hash()
    )
    return McpServerPublic(
        name=name,
        folder=folder,
        document=document,
        approved=approved,
        version=VersionPublic.model_validate(version, from_attributes=True),
    )


def _write_folder(cp: ControlPlaneDep, caller: CallerDep, name: str, wanted: str | None) -> str:
    """Authorize saving: in the current folder and, on a move or a creation, in the target."""
    if not access.exists(cp, KIND, name):
        target = wanted or "default"
        authorize(caller, "mcp.write", folder=target, missing=f"folder {target!r} not found")
        return target
    current = access.guard(cp, caller, "mcp.write", KIND, name)
    if wanted is not None and wanted != current:
        authorize(caller, "mcp.write", folder=wanted, missing=f"folder {wanted!r} not found")
        return wanted
    return current


@router.put("/{name}", response_model=McpServerPublic)
def save_server(
    name: str, body: McpServerSave, cp: ControlPlaneDep, caller: CallerDep
) -> McpServerPublic:
    """Create or update a server definition (a commit); a change voids its approval."""
    if body.document.get("name") != name:
        raise ValidationFailedError(
            [Diagnostic("/document/name", f"must be {name!r}, the name in the path")]
        )
    folder = _write_folder(cp, caller, name, body.folder)
    server, version = mcp.save(
        cp.store,
        cp.catalog,
        body.document,
        author=access.author_of(caller, body.author),
        message=body.message or f"save MCP server {name}",
        actor=caller.actor,
        folder=folder,
    )
    return _public(name, folder, server.model_dump(mode="json", exclude_none=True), version)


@router.get("", response_model=list[McpServerPublic])
def list_servers(cp: ControlPlaneDep, caller: CallerDep) -> list[McpServerPublic]:
    """Every server definition the caller may read."""
    scope = folder_scope(caller, "mcp.read")
    with cp.store.session(read_only=True) as session:
        filed = folders.folders_of(session, KIND)
    shown = []
    for entry in cp.catalog.list(KIND):
        folder = filed.get(entry.name, "default")
        if folder in scope:
            shown.append(_public(entry.name, folder, entry.document, entry.version))
    return shown


@router.get("/{name}", response_model=McpServerPublic)
def get_server(name: str, cp: ControlPlaneDep, caller: CallerDep) -> McpServerPublic:
    """One server definition at its latest version."""
    folder = access.guard(cp, caller, "mcp.read", KIND, name)
    entry = cp.catalog.get(KIND, name)
    return _public(entry.name, folder, entry.document, entry.version)


@router.delete("/{name}", response_model=VersionPublic)
def delete_server(name: str, cp: ControlPlaneDep, caller: CallerDep) -> VersionPublic:
    """Delete a server definition (a commit); its tools are unusable at once."""
    access.guard(cp, caller, "mcp.write", KIND, name)
    version = mcp.delete(
        cp.store, cp.catalog, name, author=access.author_of(caller, None), actor=caller.actor
    )
    return VersionPublic.model_validate(version, from_attributes=True)


@router.post("/{name}/approve", response_model=McpServerPublic)
async def approve_server(name: str, cp: ControlPlaneDep, caller: CallerDep) -> McpServerPublic:
    """Start or reach the server, list its tools and pin each one (a commit, audited).

    Approving runs a stdio server's command on this node, which is why only an
    administrator may; a tool that changes afterwards is blocked until approved again.
    """
    folder = access.guard(cp, caller, "mcp.approve", KIND, name)
    server, version = await mcp.approve(
        cp.store, cp.catalog, name, author=access.author_of(caller, None), actor=caller.actor
    )
    return _public(name, folder, server.model_dump(mode="json", exclude_none=True), version)
