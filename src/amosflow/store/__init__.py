"""The relational store of the control plane: runs, the event outbox, webhook deliveries.

``open_store(url)`` returns a migrated ``Store``; the repositories (``runs``, ``outbox``,
``hooks``) are plain functions that take the ``Session`` of one ``Store.session()``.
"""

from __future__ import annotations

from amosflow.store import _folders as folders
from amosflow.store import _hooks as hooks
from amosflow.store import _outbox as outbox
from amosflow.store import _runs as runs
from amosflow.store._database import Store, open_store
from amosflow.store._hooks import prune_deliveries, remember_delivery
from amosflow.store._migrate import alembic_config
from amosflow.store._outbox import OutboxRow, claim_pending, enqueue, mark_failed, mark_published
from amosflow.store._paging import Page, check_limit, decode_cursor, encode_cursor, newest_first
from amosflow.store._runs import (
    RunRecord,
    RunStatus,
    RunTrigger,
    count_runs,
    get_run,
    list_runs,
    record_run,
    set_status,
)
from amosflow.store._tables import (
    AUDIT_OUTCOMES,
    BINDING_SUBJECTS,
    DEFAULT_FOLDER,
    INSTALL_FOLDER,
    PRINCIPAL_SOURCES,
    AiUsageRow,
    ApiTokenRow,
    AuditAnchorRow,
    AuditCheckpointRow,
    AuditHoldRow,
    AuditPendingRow,
    AuditRow,
    Base,
    CatalogFolderRow,
    EnrollmentTokenRow,
    FolderRow,
    GroupMemberRow,
    GroupRow,
    OutboxEntry,
    PrincipalRow,
    RoleBindingRow,
    RunnerJobRow,
    RunnerRow,
    RunRow,
    ScimResourceRow,
    SecretRow,
    SecretVersionRow,
    TaskRow,
)

__all__ = [
    "AUDIT_OUTCOMES",
    "BINDING_SUBJECTS",
    "DEFAULT_FOLDER",
    "INSTALL_FOLDER",
    "PRINCIPAL_SOURCES",
    "AiUsageRow",
    "ApiTokenRow",
    "AuditAnchorRow",
    "AuditCheckpointRow",
    "AuditHoldRow",
    "AuditPendingRow",
    "AuditRow",
    "Base",
    "CatalogFolderRow",
    "EnrollmentTokenRow",
    "FolderRow",
    "GroupMemberRow",
    "GroupRow",
    "OutboxEntry",
    "OutboxRow",
    "Page",
    "PrincipalRow",
    "RoleBindingRow",
    "RunRecord",
    "RunRow",
    "RunStatus",
    "RunTrigger",
    "RunnerJobRow",
    "RunnerRow",
    "ScimResourceRow",
    "SecretRow",
    "SecretVersionRow",
    "Store",
    "TaskRow",
    "alembic_config",
    "check_limit",
    "claim_pending",
    "count_runs",
    "decode_cursor",
    "encode_cursor",
    "enqueue",
    "folders",
    "get_run",
    "hooks",
    "list_runs",
    "mark_failed",
    "mark_published",
    "newest_first",
    "open_store",
    "outbox",
    "prune_deliveries",
    "record_run",
    "remember_delivery",
    "runs",
    "set_status",
]
