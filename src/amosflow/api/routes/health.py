"""/healthz (the process lives) and /readyz (Temporal, the store and the bus answer)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

from amosflow.api.deps import ControlPlaneDep
from amosflow.api.schemas import Health
from amosflow.engine.codec import VaultPayloadCodec

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """Liveness: the API process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(request: Request, cp: ControlPlaneDep) -> JSONResponse:
    """Readiness: Temporal, the store and the event bus are reachable, and the codec is open."""
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
    bus = getattr(request.app.state, "bus", None)
    checks["nats"] = "ok" if bus is not None and bus.connected else "unavailable"
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
