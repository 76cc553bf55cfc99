"""/api/v1/mcp-servers: MCP server definitions per folder, approved by an administrator."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from amosflow.ai import mcp
from amosflow.api import _catalog_objects as objects
from amosflow.api import _problems as problems
from amosflow.api._deps import ControlPlaneDep
from amosflow.api._schemas import FOLDER_PATTERN, VersionPublic
from amosflow.api._security import CallerDep
from amosflow.errors import Diagnostic, ValidationFailedError
from amosflow.services import access

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
        description="Folder of the server; needed only when the name is ambiguous.",
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


@router.put("/{name}", response_model=McpServerPublic)
def save_server(
    name: str, body: McpServerSave, cp: ControlPlaneDep, caller: CallerDep
) -> McpServerPublic:
    """Create or update a server definition (a commit); a change voids its approval."""
    if body.document.get("name") != name:
        raise ValidationFailedError(
            [Diagnostic("/document/name", f"must be {name!r}, the name in the path")]
        )
    folder = access.write_guard(cp, caller, KIND, name, body.folder)
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
def list_servers(
    cp: ControlPlaneDep, caller: CallerDep, folder: objects.FolderQuery = None
) -> list[McpServerPublic]:
    """Every server definition the caller may read (in ``folder`` only, when given)."""
    return [
        _public(e.name, e.folder, e.document, e.version)
        for e in objects.readable(cp, caller, KIND, folder)
    ]


@router.get("/{name}", response_model=McpServerPublic)
def get_server(
    name: str, cp: ControlPlaneDep, caller: CallerDep, folder: objects.FolderQuery = None
) -> McpServerPublic:
    """One server definition at its latest version."""
    entry = objects.read(cp, caller, "mcp.read", KIND, name, folder=folder)
    return _public(entry.name, entry.folder, entry.document, entry.version)


@router.delete("/{name}", response_model=VersionPublic)
def delete_server(
    name: str, cp: ControlPlaneDep, caller: CallerDep, folder: objects.FolderQuery = None
) -> VersionPublic:
    """Delete a server definition (a commit); its tools are unusable at once."""
    found = access.guard(cp, caller, "mcp.write", KIND, name, folder=folder)
    version = mcp.delete(
        cp.store,
        cp.catalog,
        name,
        folder=found,
        author=access.author_of(caller, None),
        actor=caller.actor,
    )
    return VersionPublic.model_validate(version, from_attributes=True)


@router.post(
    "/{name}/approve",
    response_model=McpServerPublic,
    responses={502: problems.documented("The server could not be started, reached or listed")},
)
async def approve_server(
    name: str, cp: ControlPlaneDep, caller: CallerDep, folder: objects.FolderQuery = None
) -> McpServerPublic:
    """Start or reach the server, list its tools and pin each one (a commit, audited).

    Approving starts a stdio server's command (sandboxed) on this node, outside any folder,
    which is why it needs an administrator of every folder; a tool that changes afterwards
    is blocked until approved again.
    """
    found = access.guard(cp, caller, "mcp.approve", KIND, name, folder=folder)
    server, version = await mcp.approve(
        cp.store,
        cp.catalog,
        name,
        folder=found,
        author=access.author_of(caller, None),
        actor=caller.actor,
    )
    return _public(name, found, server.model_dump(mode="json", exclude_none=True), version)
