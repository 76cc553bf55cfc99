"""Deny by default: every request is authenticated before it reaches a route.

An ASGI middleware, not a per-route dependency, so that a route added tomorrow, a path that
matches nothing, the OpenAPI document, an SSE stream and a WebSocket upgrade are all behind
the same door. The few public paths are matched exactly on the decoded path, so a trailing
slash, another case, a ``;`` parameter or an encoded slash is simply not public.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers

from amosflow.errors import AuthenticationError, RateLimitedError
from amosflow.identity import CREDENTIALS_REFUSED

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from amosflow.identity import Authenticator, Principal

PROBLEM_TYPE = "application/problem+json"
#: Answer without credentials: liveness, readiness, the ways to get credentials.
PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/api/v1/auth/login",
        "/api/v1/auth/token",
        "/api/v1/setup",
        "/setup",
        "/api/v1/runners/enroll",
    }
)
#: Webhook deliveries authenticate themselves with an HMAC signature over the body.
_HOOK = re.compile(r"/api/v1/hooks/(?:[a-z0-9][a-z0-9._-]{0,99}/)?[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
#: The console's static page and its flat, hashed asset files: code, no data.
_CONSOLE = re.compile(r"/|/assets/[A-Za-z0-9][A-Za-z0-9_-]{0,120}(?:\.[A-Za-z0-9]{1,8}){1,2}")


def is_public(path: str) -> bool:
    """Whether ``path`` (decoded, as routing sees it) answers without a bearer token."""
    return (
        path in PUBLIC_PATHS
        or _HOOK.fullmatch(path) is not None
        or _CONSOLE.fullmatch(path) is not None
    )


def _problem(status: int, slug: str, detail: str) -> bytes:
    title = slug.replace("-", " ").capitalize()
    body = {"type": f"urn:amosflow:problem:{slug}", "title": title, "status": status}
    return json.dumps(body | {"detail": detail}).encode()


class AuthMiddleware:
    """Authenticates every HTTP and WebSocket request that is not public."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass public paths through; identify everything else or answer 401/429."""
        if scope["type"] not in {"http", "websocket"} or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        authenticator: Authenticator | None = getattr(scope["app"].state, "authenticator", None)
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        if authenticator is None:  # the node is still starting
            await _refuse(scope, send, 401, "unauthenticated", CREDENTIALS_REFUSED)
            return
        try:
            authorization = Headers(scope=scope).get("authorization")
            principal = await authenticator.authenticate(authorization, address=address)
        except RateLimitedError as err:
            await _refuse(scope, send, 429, "rate-limited", str(err), retry_after=err.retry_after)
            return
        except AuthenticationError:
            await _refuse(scope, send, 401, "unauthenticated", CREDENTIALS_REFUSED)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


async def _refuse(
    scope: Scope, send: Send, status: int, slug: str, detail: str, *, retry_after: float = 0
) -> None:
    if scope["type"] == "websocket":
        # Closing before accepting makes the server answer the upgrade with 403.
        await send({"type": "websocket.close", "code": 1008, "reason": "unauthenticated"})
        return
    document = _problem(status, slug, detail)
    headers = [
        (b"content-type", PROBLEM_TYPE.encode()),
        (b"content-length", str(len(document)).encode()),
        (b"www-authenticate", b'Bearer realm="amosflow"'),
    ]
    if retry_after > 0:
        headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    body = b"" if scope["method"] == "HEAD" else document
    await send({"type": "http.response.body", "body": body})


_bearer = HTTPBearer(auto_error=False, description="A session, API or IdP token.")


def _caller(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    if principal is None:
        raise AuthenticationError(CREDENTIALS_REFUSED)
    return principal


#: The authenticated caller of a route (declares the bearer scheme in OpenAPI too).
CallerDep = Annotated["Principal", Depends(_caller)]
