"""/api/v1/hooks/{name}: start a run from a signed webhook delivery."""

from __future__ import annotations

import json
import math
import time
from typing import Annotated

from fastapi import APIRouter, Header, Request, status
from fastapi.responses import JSONResponse

from amosflow import secrets
from amosflow.api import problems
from amosflow.api.deps import ControlPlaneDep, WatcherDep
from amosflow.api.problems import problem
from amosflow.api.schemas import RunPublic
from amosflow.errors import ActionError, NotFoundError
from amosflow.ratelimit import RateLimits
from amosflow.services import triggers as trigger_service
from amosflow.triggers.models import WebhookTrigger
from amosflow.triggers.webhooks import verify

router = APIRouter(prefix="/api/v1/hooks", tags=["hooks"], responses=problems.RESPONSES)
_LIMITS = RateLimits()
DeliveryHeader = Annotated[
    str | None, Header(alias="X-Amos-Delivery", min_length=1, max_length=100)
]
TimestampHeader = Annotated[str | None, Header(alias="X-Amos-Timestamp", max_length=20)]
SignatureHeader = Annotated[str | None, Header(alias="X-Amos-Signature", max_length=200)]


def _unauthorized(reason: str) -> JSONResponse:
    return problem(401, "Unauthorized", reason, slug="unauthorized")


def _webhook(cp: ControlPlaneDep, name: str) -> WebhookTrigger | None:
    """The hook's trigger; None for a name that is not a webhook (answered like a bad signature)."""
    try:
        trigger = trigger_service.load(cp, name)
    except NotFoundError:
        return None
    return trigger if isinstance(trigger, WebhookTrigger) else None


def _gate(trigger: WebhookTrigger, request: Request) -> JSONResponse | None:
    """Refuse before reading the body: rate limit, content type, declared size."""
    wait = _LIMITS.take(trigger.name, trigger.rate_per_s, trigger.burst)
    if wait > 0:
        response = problem(429, "Too many requests", "rate limit reached", slug="rate-limited")
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != trigger.content_type:
        expected = f"expected {trigger.content_type}"
        return problem(415, "Unsupported media type", expected, slug="unsupported-media-type")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > trigger.max_body_bytes:
        return _too_large(trigger)
    return None


def _too_large(trigger: WebhookTrigger) -> JSONResponse:
    limit = f"at most {trigger.max_body_bytes} bytes"
    return problem(413, "Content too large", limit, slug="too-large")


async def _read_body(trigger: WebhookTrigger, request: Request) -> bytes | None:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > trigger.max_body_bytes:
            return None
    return bytes(body)


def _authenticate(
    trigger: WebhookTrigger, timestamp: str, signature: str, body: bytes
) -> JSONResponse | None:
    try:
        key = secrets.resolve(trigger.secret).encode()
    except ActionError:
        detail = "the hook's signing secret is not bound"
        return problem(503, "Hook not configured", detail, slug="hook-unconfigured")
    window = trigger.replay_window_s
    reason = verify(key, timestamp, body, signature, window_s=window, now=time.time())
    return _unauthorized(reason) if reason else None


@router.post(
    "/{name}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunPublic,
    responses={
        401: problems.documented("Signature or timestamp refused"),
        413: problems.documented("Body too large"),
        415: problems.documented("Wrong content type"),
        429: problems.documented("Rate limit reached; see Retry-After"),
    },
)
async def deliver(
    name: str,
    request: Request,
    cp: ControlPlaneDep,
    watcher: WatcherDep,
    *,
    delivery: DeliveryHeader = None,
    timestamp: TimestampHeader = None,
    signature: SignatureHeader = None,
) -> RunPublic | JSONResponse:
    """Authenticate the delivery, then start the hook's flow with the body as its inputs.

    An unknown hook and an unsigned delivery get the same 401 as a bad signature, so hook
    names cannot be probed.
    """
    trigger = _webhook(cp, name)
    if trigger is None or not (delivery and timestamp and signature):
        return _unauthorized("missing or invalid signature")
    refusal = _gate(trigger, request)
    if refusal is not None:
        return refusal
    body = await _read_body(trigger, request)
    if body is None:
        return _too_large(trigger)
    refusal = _authenticate(trigger, timestamp, signature, body)
    if refusal is not None:
        return refusal
    try:
        inputs = json.loads(body) if body else {}
    except ValueError:
        inputs = None
    if not isinstance(inputs, dict):
        return problem(422, "Invalid body", "the body must be a JSON object", slug="invalid-body")
    record = await trigger_service.accept_delivery(cp, trigger, delivery, inputs)
    watcher.watch(record.run_id)
    data = record.model_dump()
    data["flow"] = data.pop("flow_name")
    return RunPublic.model_validate(data)
