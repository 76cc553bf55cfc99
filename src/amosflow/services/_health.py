"""Readiness of a control-plane node: Temporal, the store, the bus and the payload codec."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import text
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

from amosflow.engine.codec import VaultPayloadCodec

if TYPE_CHECKING:
    from collections.abc import Callable

    from amosflow.services._runs import ControlPlane


class Bus(Protocol):
    """What readiness needs to know of the event bus."""

    @property
    def connected(self) -> bool:
        """Whether the connection to NATS is up."""
        ...


async def readiness(cp: ControlPlane, bus: Callable[[], Bus | None]) -> dict[str, str]:
    """One line per dependency: ``ok``, or why it is not (``unavailable: …``, ``sealed: …``).

    ``bus`` answers the node's current bus connection, asked last (the relay reconnects).
    """
    checks: dict[str, str] = {}
    codec = cp.client.data_converter.payload_codec
    if isinstance(codec, VaultPayloadCodec):
        # A sealed codec means no run can start or move on: say why instead of only failing later.
        sealed = await asyncio.to_thread(codec.sealed_reason)
        checks["codec"] = "ok" if sealed is None else f"sealed: {sealed}"
    try:
        await cp.client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=cp.settings.temporal_namespace),
            timeout=timedelta(seconds=2),
        )
        checks["temporal"] = "ok"
    except Exception as err:
        checks["temporal"] = f"unavailable: {type(err).__name__}"
    try:
        with cp.store.session() as session:
            session.execute(text("SELECT 1"))
        checks["store"] = "ok"
    except Exception as err:
        checks["store"] = f"unavailable: {type(err).__name__}"
    connection = bus()
    checks["nats"] = "ok" if connection is not None and connection.connected else "unavailable"
    return checks
