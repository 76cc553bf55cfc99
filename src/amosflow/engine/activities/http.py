"""`http.request`: one HTTP call with the step's idempotency key as a header.

Every request, and every redirect hop when ``follow_redirects`` is set, goes through the
run's egress policy (decision 0024): the URL is checked first, and the connection step
resolves the host itself and connects only to an address the policy opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from amosflow import egress
from amosflow.dsl import parse_duration
from amosflow.engine.activities._base import ActionContext, implementation
from amosflow.errors import ActionError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TIMEOUT_S = 30.0
TOO_MANY_REQUESTS = 429
SERVER_ERROR = 500
IDLE_CLIENTS_KEPT = 16


@dataclass
class _Pooled:
    client: httpx.AsyncClient
    users: int = 0


# One connection pool per event loop and egress policy: a connection opened under one
# policy is never reused by a run whose policy may not open it.
_POOLS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, OrderedDict[egress.EgressPolicy, _Pooled]
] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def _client_for(policy: egress.EgressPolicy) -> AsyncIterator[httpx.AsyncClient]:
    """Borrow the pooled client of ``policy``; idle pools beyond a few are closed."""
    pools = _POOLS.setdefault(asyncio.get_running_loop(), OrderedDict())
    pooled = pools.get(policy)
    if pooled is None or pooled.client.is_closed:
        pooled = pools[policy] = _Pooled(egress.guarded_client(policy))
    pools.move_to_end(policy)
    pooled.users += 1
    try:
        yield pooled.client
    finally:
        pooled.users -= 1
        idle = [p for p, entry in pools.items() if entry.users == 0]
        for stale in idle[: max(0, len(idle) - IDLE_CLIENTS_KEPT)]:
            await pools.pop(stale).client.aclose()


@implementation("http.request")
async def request(ctx: ActionContext, params: Any) -> dict[str, Any]:
    """Send the request and return status, headers, json (when JSON) and text."""
    policy = await egress.run_policy(ctx)
    egress.check_url(params.url, policy)
    headers = dict(params.headers)
    if not any(k.lower() == IDEMPOTENCY_HEADER.lower() for k in headers):
        headers[IDEMPOTENCY_HEADER] = ctx.idempotency_key
    timeout = (
        parse_duration(params.timeout).total_seconds() if params.timeout else DEFAULT_TIMEOUT_S
    )
    kwargs: dict[str, Any] = {"headers": headers, "timeout": timeout}
    if params.json_ is not None:
        kwargs["json"] = params.json_
    elif params.body is not None:
        kwargs["content"] = params.body
    try:
        if params.query:  # httpx replaces the URL's own query with `params`: merge them
            kwargs["params"] = httpx.URL(params.url).params.merge(params.query)
        async with _client_for(policy) as client:
            response = await client.request(
                params.method, params.url, follow_redirects=params.follow_redirects, **kwargs
            )
    except httpx.TooManyRedirects:
        raise ActionError(
            ctx.redact(f"{params.method} {params.url}: more than {egress.MAX_REDIRECTS} redirects"),
            type_="TooManyRedirects",
            retryable=False,
        ) from None
    except (httpx.HTTPError, httpx.InvalidURL) as err:
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
