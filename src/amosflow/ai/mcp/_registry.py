"""MCP servers as use cases: save, delete and approve a definition, and load a step's servers.

Saving and deleting are catalog commits with an audit record, like every catalog kind; the
approval block is written only by ``approve``, which lists the server's tools itself and
pins them, so nobody can save pins they did not get from the server.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from amosflow import audit
from amosflow.ai.mcp._client import list_all_tools, open_session
from amosflow.ai.mcp._definition import KIND, Approval, McpServer, parse_server
from amosflow.ai.mcp._gateway import AuditSink, Outcome, ServerEntry
from amosflow.ai.mcp._pins import tool_pin
from amosflow.errors import Diagnostic, NotFoundError, ValidationFailedError
from amosflow.store import folders

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from sqlalchemy.orm import Session

    from amosflow.catalog import Catalog, Version
    from amosflow.store import Store


def store_audit(store: Store, actor: str) -> AuditSink:
    """An audit sink that appends to the install's hash-chained trail, one transaction each."""

    def append(
        *,
        action: str,
        resource: str,
        folder: str,
        details: dict[str, Any],
        outcome: Outcome = "ok",
    ) -> None:
        with store.session() as session:
            audit.append(
                session,
                actor=actor,
                action=action,
                resource=resource,
                folder=folder,
                details=details,
                outcome=outcome,
            )

    return append


def _version_details(version: Version) -> dict[str, Any]:
    return {"commit": version.commit, "content_hash": version.content_hash}


def _current(catalog: Catalog, name: str, folder: str) -> McpServer | None:
    try:
        return parse_server(catalog.get(KIND, name, folder=folder).document)
    except NotFoundError:
        return None


def save(
    store: Store,
    catalog: Catalog,
    document: dict[str, Any],
    *,
    author: str,
    message: str,
    actor: str,
    folder: str,
) -> tuple[McpServer, Version]:
    """Validate and commit a definition; the current approval is kept (a change voids it)."""
    if "approval" in document:
        raise ValidationFailedError(
            [Diagnostic("/approval", "is written by approving the server, not by saving it")]
        )
    server = parse_server(document)
    current = _current(catalog, server.name, folder)
    if current is not None and current.approval is not None:
        server = server.model_copy(update={"approval": current.approval})
    with store.session(read_only=True) as session:
        folders.require_folder(session, folder)
    version = catalog.save(
        KIND, server.name, _document(server), folder=folder, author=author, message=message
    )

    def record(session: Session) -> None:
        audit.append(
            session,
            actor=actor,
            action="mcp.save",
            resource=f"{KIND}/{server.name}",
            folder=folder,
            details={**_version_details(version), "definition": server.definition_hash()},
        )

    _keep_if_audited(store, catalog, server.name, version, folder, record)
    return server, version


def delete(
    store: Store, catalog: Catalog, name: str, *, folder: str, author: str, actor: str
) -> Version:
    """Commit the removal of a definition and audit it, in its folder."""
    version = catalog.delete(
        KIND, name, folder=folder, author=author, message=f"delete MCP server {name}"
    )

    def record(session: Session) -> None:
        audit.append(
            session,
            actor=actor,
            action="mcp.delete",
            resource=f"{KIND}/{name}",
            folder=folder,
            details=_version_details(version),
        )

    _keep_if_audited(store, catalog, name, version, folder, record)
    return version


def _keep_if_audited(  # noqa: PLR0917 - private, one argument per part of the commit
    store: Store,
    catalog: Catalog,
    name: str,
    version: Version,
    folder: str,
    record: Callable[[Session], None],
) -> None:
    """Keep a commit only once its audit record is durable; take it back otherwise."""

    def durable() -> None:
        with store.session() as session:
            record(session)

    catalog.keep_if(KIND, name, version, folder=folder, durable=durable)


async def pins_of(server: McpServer) -> dict[str, str]:
    """Start or reach the server, list its tools and return the pin of each, by tool name."""
    async with open_session(server) as session:
        tools = await list_all_tools(session, server.name)
    return {tool.name: tool_pin(tool) for tool in tools}


async def approve(
    store: Store, catalog: Catalog, name: str, *, folder: str, author: str, actor: str
) -> tuple[McpServer, Version]:
    """Pin every tool the server lists now into its definition (a commit) and audit it."""
    server = parse_server(catalog.get(KIND, name, folder=folder).document)
    pins = await pins_of(server)
    approval = Approval(
        definition=server.definition_hash(),
        tools=pins,
        approved_by=actor,
        approved_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    approved = server.model_copy(update={"approval": approval})
    version = catalog.save(
        KIND,
        name,
        _document(approved),
        folder=folder,
        author=author,
        message=f"approve MCP server {name}",
    )

    def record(session: Session) -> None:
        audit.append(
            session,
            actor=actor,
            action="mcp.approve",
            resource=f"{KIND}/{name}",
            folder=folder,
            details={**_version_details(version), "definition": approval.definition, "tools": pins},
        )

    _keep_if_audited(store, catalog, name, version, folder, record)
    return approved, version


def load_servers(catalog: Catalog, names: Iterable[str], folder: str) -> list[ServerEntry]:
    """The definitions of ``names`` in ``folder``'s namespace, the only place a run looks.

    A name ``folder`` does not hold is left out, so a call to its tools is refused as out of
    scope: the same server name in another folder is another server, never this one.
    """
    entries: list[ServerEntry] = []
    for name in sorted(set(names)):
        server = _current(catalog, name, folder)
        if server is not None:
            entries.append(ServerEntry(server, folder))
    return entries


def _document(server: McpServer) -> dict[str, Any]:
    return server.model_dump(mode="json", exclude_none=True)
