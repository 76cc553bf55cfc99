"""The relational store of the control plane: runs, the event outbox, webhook deliveries.

``open_store(url)`` returns a migrated ``Store``; the repositories (``runs``, ``outbox``,
``hooks``) are plain functions that take the ``Session`` of one ``Store.session()``.
"""

from __future__ import annotations

from amosflow.store import hooks, outbox, runs
from amosflow.store._database import Store, open_store
from amosflow.store.outbox import OutboxRow
from amosflow.store.paging import Page
from amosflow.store.runs import RunRecord, RunStatus, RunTrigger

__all__ = [
    "OutboxRow",
    "Page",
    "RunRecord",
    "RunStatus",
    "RunTrigger",
    "Store",
    "hooks",
    "open_store",
    "outbox",
    "runs",
]
