"""`http.request`: one HTTP call with the step's idempotency key as a header."""

from __future__ import annotations

from typing import Any

import httpx

from amosflow.dsl.models import parse_duration
from amosflow.engine.activities.base import ActionContext, implementation
from amosflow.errors import ActionError

IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TIMEOUT_S = 30.0
TOO_MANY_REQUESTS = 429
SERVER_ERROR = 500

_client: httpx.AsyncClient | None = None


def _shared_client() -> httpx.AsyncClient:
    """One pooled client per worker process; connections are reused across steps."""
    global _client  # noqa: PLW0603 - a process-wide connection pool
    if _client is None or _client.is_closed:
        _client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
    return _client


@implementation("http.request")
async def request(ctx: ActionContext, params: Any) -> dict[str, Any]:
    """Send the request and return status, headers, json (when JSON) and text."""
    headers = dict(params.headers)
    if not any(k.lower() == IDEMPOTENCY_HEADER.lower() for k in headers):
        headers[IDEMPOTENCY_HEADER] = ctx.idempotency_key
    timeout = (
        parse_duration(params.timeout).total_seconds() if params.timeout else DEFAULT_TIMEOUT_S
    )
    kwargs: dict[str, Any] = {"headers": headers, "params": params.query, "timeout": timeout}
    if params.json_ is not None:
        kwargs["json"] = params.json_
    elif params.body is not None:
        kwargs["content"] = params.body
    try:
        response = await _shared_client().request(params.method, params.url, **kwargs)
    except httpx.HTTPError as err:
        raise ActionError(
            ctx.redact(f"{params.method} {params.url} failed: {type(err).__name__}: {err}"),
            type_="HttpError",
        ) from None
    result: dict[str, Any] = {
        "status": response.status_code,
        "headers": dict(response.headers),
        "text": response.text,
    }
    if "json" in response.headers.get("content-type", ""):
        try:
            result["json"] = response.json()
        except ValueError:
            result["json"] = None
    if params.expect and response.status_code not in params.expect:
        retryable = (
            response.status_code >= SERVER_ERROR or response.status_code == TOO_MANY_REQUESTS
        )
        raise ActionError(
            ctx.redact(
                f"{params.method} {params.url} answered {response.status_code},"
                f" expected one of {params.expect}"
            ),
            type_="UnexpectedStatus",
            retryable=retryable,
        )
    return result
