"""/api/v1/hooks/{folder}/{name}: start a run from a signed webhook delivery.

Until its signature is verified, a delivery learns nothing: a hook that does not exist, one
whose signing secret is not in its folder's vault and one that refuses the signature all
answer the same 401, and each is checked against a key (a random one when there is none).
Only a verified delivery meets the hook's own limits (rate, content type, size), so nobody
without the key can drain a hook's rate limit.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request, Response, status
from fastapi.responses import JSONResponse

from amosflow.api import _problems as problems
from amosflow.api._deps import ControlPlaneDep
from amosflow.api._problems import problem
from amosflow.api._schemas import FOLDER_PATTERN, RunPublic
from amosflow.errors import AmosError
from amosflow.host import RateLimits
from amosflow.services import runs as run_service
from amosflow.services import triggers as trigger_service
from amosflow.triggers import MAX_BODY_BYTES, WebhookTrigger, verify
from amosflow.vault import Vault

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/hooks", tags=["hooks"], responses=problems.RESPONSES)
#: Before the signature is checked, deliveries are limited per sender address, the same for
#: every hook; after it, by the hook's own bucket. The address bucket is twice a hook's
#: default, so one sender can use the whole of its hook's default rate (decision 0056).
UNVERIFIED_RATE_PER_S = 2 * float(WebhookTrigger.model_fields["rate_per_s"].default)
UNVERIFIED_BURST = 2 * int(WebhookTrigger.model_fields["burst"].default)
_UNVERIFIED = RateLimits()
_VERIFIED = RateLimits()
DeliveryHeader = Annotated[
    str | None, Header(alias="X-Amos-Delivery", min_length=1, max_length=100)
]
TimestampHeader = Annotated[str | None, Header(alias="X-Amos-Timestamp", max_length=20)]
SignatureHeader = Annotated[str | None, Header(alias="X-Amos-Signature", max_length=200)]
FolderPath = Annotated[str, Path(pattern=FOLDER_PATTERN, description="Folder of the hook.")]
REFUSED = "missing or invalid signature"
DEFAULT_WINDOW_S = 300
DEFAULT_FOLDER = "default"


def _unauthorized() -> JSONResponse:
    return problem(401, "Unauthorized", REFUSED, slug="unauthorized")


def _rate_limited(wait: float) -> JSONResponse:
    response = problem(429, "Too many requests", "rate limit reached", slug="rate-limited")
    response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return response


def _too_large(limit: int) -> JSONResponse:
    return problem(413, "Content too large", f"at most {limit} bytes", slug="too-large")


def _hook(
    cp: ControlPlaneDep, vault: Vault, folder: str, name: str
) -> tuple[WebhookTrigger | None, bytes | None]:
    """The hook and its signing key from its folder's vault; (None, None) when either is missing."""
    try:
        trigger = trigger_service.load(cp, name, folder)
    except AmosError:
        return None, None
    if not isinstance(trigger, WebhookTrigger):
        return None, None
    try:
        return trigger, vault.reveal(trigger.secret, folder).encode()
    except AmosError as err:
        log.warning("hook %s/%s cannot verify deliveries: %s", folder, name, err)
        return None, None


async def _read_body(request: Request, limit: int) -> bytes | None:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _after_verification(
    trigger: WebhookTrigger, key: str, request: Request, size: int
) -> JSONResponse | None:
    """The hook's own limits, met only by a delivery signed with its key."""
    wait = _VERIFIED.take(key, trigger.rate_per_s, trigger.burst)
    if wait > 0:
        return _rate_limited(wait)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != trigger.content_type:
        expected = f"expected {trigger.content_type}"
        return problem(415, "Unsupported media type", expected, slug="unsupported-media-type")
    if size > trigger.max_body_bytes:
        return _too_large(trigger.max_body_bytes)
    return None


_DOCUMENTED: dict[int | str, dict[str, Any]] = {
    401: problems.documented("Signature, timestamp, delivery id or hook refused"),
    413: problems.documented("Body too large"),
    415: problems.documented("Wrong content type"),
    429: problems.documented("Rate limit reached; see Retry-After"),
    200: {"model": RunPublic, "description": "`respond: result`: the run, ended within the wait"},
}


@router.post(
    "/{folder}/{name}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunPublic,
    responses=_DOCUMENTED,
)
async def deliver(
    folder: FolderPath,
    name: str,
    request: Request,
    cp: ControlPlaneDep,
    response: Response,
    *,
    delivery: DeliveryHeader = None,
    timestamp: TimestampHeader = None,
    signature: SignatureHeader = None,
) -> RunPublic | JSONResponse:
    """Authenticate the delivery, then start the hook's flow with the body as its inputs.

    The signature covers the timestamp, the delivery id and the body; the delivery id names
    the run, so a repeated delivery joins the run it started. A hook with `respond: result`
    answers 200 with the ended run when it ends within the hook's `wait_s`, else 202.
    """
    if not (delivery and timestamp and signature):
        return _unauthorized()
    body = await _unverified_body(request)
    if isinstance(body, JSONResponse):
        return body
    trigger, key = _hook(cp, request.app.state.vault, folder, name)
    # An unknown hook is checked against a random key, so it is refused by the same check.
    reason = verify(
        key or os.urandom(32),
        timestamp,
        delivery,
        body,
        signature,
        window_s=trigger.replay_window_s if trigger else DEFAULT_WINDOW_S,
        now=time.time(),
    )
    if trigger is None or key is None or reason is not None:
        log.info("hook delivery to %s/%s refused: %s", folder, name, reason or "no such hook")
        return _unauthorized()
    refusal = _after_verification(trigger, f"{folder}/{name}", request, len(body))
    if refusal is not None:
        return refusal
    try:
        inputs = json.loads(body) if body else {}
    except ValueError:
        inputs = None
    if not isinstance(inputs, dict):
        return problem(422, "Invalid body", "the body must be a JSON object", slug="invalid-body")
    record = await trigger_service.accept_delivery(cp, trigger, folder, delivery, inputs)
    if trigger.respond == "result" and record.status in run_service.TERMINAL:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/api/v1/runs/{record.run_id}"
    data = record.model_dump()
    data["flow"] = data.pop("flow_name")
    return RunPublic.model_validate(data)


async def _unverified_body(request: Request) -> bytes | JSONResponse:
    """The body, or the refusal every hook gives alike before a signature is checked."""
    address = request.client.host if request.client else "unknown"
    wait = _UNVERIFIED.take(address, UNVERIFIED_RATE_PER_S, UNVERIFIED_BURST)
    if wait > 0:
        return _rate_limited(wait)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return _too_large(MAX_BODY_BYTES)
    body = await _read_body(request, MAX_BODY_BYTES)
    return _too_large(MAX_BODY_BYTES) if body is None else body


@router.post(
    "/{name}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunPublic,
    responses=_DOCUMENTED,
)
async def deliver_default(
    name: str,
    request: Request,
    cp: ControlPlaneDep,
    response: Response,
    *,
    delivery: DeliveryHeader = None,
    timestamp: TimestampHeader = None,
    signature: SignatureHeader = None,
) -> RunPublic | JSONResponse:
    """A hook of the `default` folder, at the shorter address."""
    return await deliver(
        DEFAULT_FOLDER,
        name,
        request,
        cp,
        response,
        delivery=delivery,
        timestamp=timestamp,
        signature=signature,
    )
