"""What AI steps use on a worker: the store, the catalog and the one model gateway.

A flow worker opens them lazily from its settings (``AMOS_HOME``, ``AMOS_DATABASE_URL``,
``AMOS_CATALOG_PATH``), the way the secret resolver opens the vault: an install that never
runs an AI step never touches them. A composition root or a test may install its own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from amosflow import audit, egress
from amosflow.ai._gateway import CallContext, ModelGateway
from amosflow.catalog import Catalog
from amosflow.config import CatalogSettings, EngineSettings, StoreSettings
from amosflow.errors import ActionError, NotFoundError
from amosflow.store import open_store, runs
from amosflow.vault import VaultResolver

if TYPE_CHECKING:
    from amosflow.engine.activities import ActionContext
    from amosflow.store import Store

__all__ = ["AiRuntime", "current", "install", "step_context"]


@dataclass
class AiRuntime:
    """The store (usage, audit, folders), the catalog (model definitions) and the gateway."""

    store: Store
    catalog: Catalog
    gateway: ModelGateway

    @classmethod
    def from_settings(cls) -> AiRuntime:
        """Open the worker's own store and catalog, as its settings name them."""
        home = EngineSettings().home
        store = open_store(StoreSettings(home=home).url)
        catalog = Catalog(CatalogSettings(home=home).path)
        resolver = VaultResolver(home, audit.record_secret_read)
        return cls(store, catalog, ModelGateway(store, resolve_secret=resolver))


_lock = threading.Lock()
_current: AiRuntime | None = None


def install(runtime: AiRuntime | None) -> AiRuntime | None:
    """Use ``runtime`` from now on (None: open from settings on next use); return the old one."""
    global _current  # one runtime per worker process, like its vault resolver
    with _lock:
        previous, _current = _current, runtime
    return previous


def current() -> AiRuntime:
    """The installed runtime, opened from the worker's settings on first use."""
    global _current  # noqa: PLW0603 - see install()
    with _lock:
        if _current is None:
            _current = AiRuntime.from_settings()
        return _current


async def step_context(
    ctx: ActionContext, runtime: AiRuntime, purpose: str = "step"
) -> CallContext:
    """The call context of an action: its run, step, folder, flow, secrets and egress policy.

    The folder comes from the run's record, the only thing a run cannot point elsewhere; a run
    the node's store does not know (one `amos run` started outside any node) has no folder,
    and its AI steps fail closed rather than borrow one.
    """
    try:
        with runtime.store.session(read_only=True) as session:
            record = runs.get_run(session, runs.root_run_id(ctx.call.run_id))
    except NotFoundError:
        raise ActionError(
            f"run {ctx.call.run_id!r} is not recorded by this node: AI steps use the models and"
            " MCP servers of their run's folder, so they run only in runs the node started",
            type_="RunUnknown",
            retryable=False,
        ) from None
    folder, flow = record.folder, record.flow_name
    return CallContext(
        run_id=ctx.call.run_id,
        step_id=ctx.call.step_id,
        folder=folder,
        flow=flow,
        purpose=purpose,
        secrets=tuple(v for v in ctx.secrets_in_use if v),
        egress=await egress.run_policy(ctx),
    )
