"""Bring an install made by an older release up to this one's layout, once, at start.

Catalog objects saved before folders were namespaces lie at ``<kind>/<name>.json`` with
their folder recorded in the store; they move to ``<kind>/<folder>/<name>.json`` in one
commit, audited, and a moved schedule gets its new Temporal Schedule in place of the old
(decision 0041).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from amosflow import audit
from amosflow.services import _triggers as triggers
from amosflow.store import INSTALL_FOLDER, folders
from amosflow.triggers import ScheduleTrigger, schedules

if TYPE_CHECKING:
    from amosflow.services._runs import ControlPlane

log = logging.getLogger(__name__)


async def adopt_legacy_catalog(cp: ControlPlane) -> int:
    """Move every object of the old layout into its folder; returns how many moved."""
    with cp.store.session(read_only=True) as session:
        placed = folders.all_folders_of(session)
    moved = cp.catalog.adopt_legacy(lambda kind, name: placed.get((kind, name), "default"))
    if not moved:
        return 0
    with cp.store.session() as session:
        audit.append(
            session,
            actor="system:upgrade",
            action="catalog.migrate",
            resource="catalog",
            folder=INSTALL_FOLDER,
            details={"moved": [f"{kind}/{folder}/{name}" for kind, folder, name in moved]},
        )
    queue = schedules.control_queue(cp.settings.task_queue)
    for kind, folder, name in moved:
        if kind != triggers.KIND:
            continue
        trigger = triggers.load(cp, name, folder)
        if isinstance(trigger, ScheduleTrigger):
            await schedules.remove(cp.client, name, None)
            await schedules.sync(cp.client, trigger, folder, queue)
    log.info("moved %d catalog objects into their folders", len(moved))
    return len(moved)
