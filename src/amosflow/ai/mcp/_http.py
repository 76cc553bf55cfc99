"""The HTTP client the MCP SDK uses for a server over streamable HTTP, held to the egress policy.

Every connection goes through ``egress.resolve``: the host is resolved once, every address
is checked against the policy, and the connection is made to an address that was checked,
so a name that resolves to loopback or a metadata address is refused and a name that
re-resolves between check and connect (DNS rebinding) cannot win. This is what
``http.request`` does (``egress.EgressTransport``), rebuilt for the SDK's HTTP library
(``httpx2``, a fork of httpx with its own ``httpcore2``). TLS keeps the name for SNI and
certificate checks; proxies from the environment are ignored (they would connect for us).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpcore
import httpcore2
import httpx2

from amosflow import egress

if TYPE_CHECKING:
    from collections.abc import Iterable

LIMITS = httpx2.Limits(max_connections=20, max_keepalive_connections=5, keepalive_expiry=5.0)
MIN_ERROR_STATUS = 400


class _GuardedBackend(httpcore2.AsyncNetworkBackend):
    """Connects only to addresses the policy opened, resolved and checked here."""

    def __init__(self, policy: egress.EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await egress.resolve(host, port, self._policy)
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"resolving {host} timed out") from None
        except httpcore.ConnectError as err:  # egress speaks httpcore; the SDK httpcore2
            raise httpcore2.ConnectError(str(err)) from None
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as err:
                failure = err
        assert failure is not None  # resolve returns at least one address
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        del timeout, socket_options
        raise egress.EgressDeniedError(path, "unix sockets are not an egress destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@dataclass
class HttpFailure:
    """The last error status a server answered, to say why a session could not open."""

    status: int
    reason: str

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.reason}".rstrip()


class GuardedTransport(httpx2.AsyncBaseTransport):
    """httpx2's transport with every URL checked and every connection resolved and pinned."""

    def __init__(self, policy: egress.EgressPolicy) -> None:
        self.policy = policy
        self.failure: HttpFailure | None = None
        self._inner = httpx2.AsyncHTTPTransport(trust_env=False, limits=LIMITS)
        # httpx2 builds its pool with no way to pass a network backend; build it again with
        # the guarded one and the same settings.
        self._inner._pool = httpcore2.AsyncConnectionPool(  # noqa: SLF001
            ssl_context=httpx2.create_ssl_context(trust_env=False),
            max_connections=LIMITS.max_connections,
            max_keepalive_connections=LIMITS.max_keepalive_connections,
            keepalive_expiry=LIMITS.keepalive_expiry,
            network_backend=_GuardedBackend(policy),
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Check the URL (scheme, host), then send through the guarded pool."""
        egress.check_url(str(request.url), self.policy)
        response = await self._inner.handle_async_request(request)
        if response.status_code >= MIN_ERROR_STATUS:
            self.failure = HttpFailure(response.status_code, response.reason_phrase)
        return response

    async def aclose(self) -> None:
        """Close the pool's connections."""
        await self._inner.aclose()


def guarded_client(transport: GuardedTransport) -> httpx2.AsyncClient:
    """The SDK's HTTP client over ``transport``, with the SDK's own timeouts."""
    from mcp.shared._httpx_utils import (  # noqa: PLC0415 - the SDK loads on first use
        MCP_DEFAULT_SSE_READ_TIMEOUT,
        MCP_DEFAULT_TIMEOUT,
    )

    timeout = httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT)
    return httpx2.AsyncClient(transport=transport, timeout=timeout, trust_env=False)
