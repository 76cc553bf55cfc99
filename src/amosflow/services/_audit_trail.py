"""Reading the audit trail for auditors: query, export and verify, each within the caller's scope.

Reading changes nothing; what a caller may read is decided here, by its folder scope.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Literal

from amosflow import audit
from amosflow.errors import Diagnostic, ValidationFailedError
from amosflow.identity import authorize, folder_scope

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    from amosflow.identity import Principal
    from amosflow.store import Page, Store

ExportFormat = Literal["jsonl", "cef"]


def readable_folder(caller: Principal, permission: str, folder: str | None) -> str | None:
    """The folder filter a caller's scope allows: any for a global auditor, else one of its own."""
    scope = folder_scope(caller, permission)
    if scope.every:
        return folder
    if folder is not None:
        authorize(caller, permission, folder=folder, missing=f"folder {folder!r} not found")
        return folder
    if len(scope.folders) == 1:
        return next(iter(scope.folders))
    if not scope.folders:
        authorize(caller, permission)  # raises: nowhere to look
    raise ValidationFailedError([Diagnostic("/folder", "name one of your folders")])


def query(
    store: Store,
    caller: Principal,
    *,
    actor: str | None = None,
    action: str | None = None,
    resource: str | None = None,
    folder: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> Page[audit.AuditRecord]:
    """Audit records ``caller`` may see, newest first, filtered and paged by cursor."""
    scoped = readable_folder(caller, "audit.read", folder)
    with store.session(read_only=True) as session:
        return audit.query(
            session,
            actor=actor,
            action=action,
            resource=resource,
            folder=scoped,
            since=since,
            until=until,
            cursor=cursor,
            limit=limit,
        )


def export(
    store: Store,
    caller: Principal,
    export_format: ExportFormat,
    *,
    folder: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> str:
    """Every matching record oldest first, one per line: JSON Lines (re-hashable) or CEF."""
    scoped = readable_folder(caller, "audit.export", folder)
    render = audit.json_line if export_format == "jsonl" else audit.to_cef
    out = io.StringIO()
    with store.session(read_only=True) as session:
        audit.export_lines(session, out, render, folder=scoped, since=since, until=until)
    return out.getvalue()


def verify(store: Store, home: Path) -> audit.VerifyReport:
    """Verify the whole chain against the signed checkpoints (what `amos audit verify` does)."""
    settings = audit.AuditSettings(home=home)
    public_key = (
        audit.load_public_key(settings.public_key_path)
        if settings.public_key_path.exists()
        else None
    )
    return audit.verify(store, sink=audit.JsonlSink(settings.sink_path), public_key=public_key)
