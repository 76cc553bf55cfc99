"""/healthz (the process lives) and /readyz (Temporal, the store and the bus answer)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from amosflow.api._deps import ControlPlaneDep
from amosflow.api._schemas import Health
from amosflow.services import health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """Liveness: the API process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(request: Request, cp: ControlPlaneDep) -> JSONResponse:
    """Readiness: Temporal, the store and the event bus are reachable, and the codec is open."""
    checks = await health.readiness(cp, lambda: getattr(request.app.state, "bus", None))
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
