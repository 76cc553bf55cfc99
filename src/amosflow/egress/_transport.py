"""Connecting where the policy allows: resolve once, check each address, use the checked one."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeAlias

import httpcore
import httpx

from amosflow.egress._addresses import _canonical, parse_host
from amosflow.egress._policy import (
    EgressDeniedError,
    EgressPolicy,
    _check_name,
    check_address,
    check_url,
)

Resolver: TypeAlias = Callable[[str, int], Awaitable[list[str]]]


MAX_REDIRECTS = 5


LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


async def resolve(
    host: str, port: int, policy: EgressPolicy, *, resolver: Resolver = _getaddrinfo
) -> list[str]:
    """Resolve ``host`` once, check every address, and return the ones to connect to.

    One refused address refuses the host: a name that resolves to a public and a loopback
    address is not trusted with either.
    """
    try:
        parsed = parse_host(host)
    except ValueError as err:
        raise EgressDeniedError(host, f"malformed host: {err}") from None
    if isinstance(parsed, str):
        _check_name(parsed, port, policy)
        try:
            found = await resolver(parsed, port)
        except OSError as err:
            raise httpcore.ConnectError(f"cannot resolve {parsed}: {err}") from None
        if not found:
            raise httpcore.ConnectError(f"{parsed} resolves to no address")
        name = parsed
    else:
        found, name = [str(parsed)], host
    addresses: list[str] = []
    for text in dict.fromkeys(found):
        address = ipaddress.ip_address(text)
        check_address(address, port, name, policy)
        canonical = _canonical(address)
        # Keep a zone id (needed to reach a link-local address someone explicitly opened).
        addresses.append(text if canonical.version == 6 else str(canonical))  # noqa: PLR2004
    return addresses


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """A network backend that connects only to addresses the policy opened."""

    def __init__(self, policy: EgressPolicy, resolver: Resolver) -> None:
        self._policy = policy
        self._resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve(host, port, self._policy, resolver=self._resolver)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
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
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as err:
                failure = err
        assert failure is not None  # resolve returns at least one address
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        del timeout, socket_options
        raise EgressDeniedError(path, "unix sockets are not an egress destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class EgressTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with a connection step that resolves, checks and pins the address.

    No proxy and no environment (``trust_env``) are used: a proxy would connect instead of
    us, and the policy could not see the destination.
    """

    def __init__(self, policy: EgressPolicy, *, resolver: Resolver = _getaddrinfo) -> None:
        super().__init__(trust_env=False, limits=LIMITS)
        self.policy = policy
        # httpx builds its pool with no way to pass a network backend; build it again with
        # the guarded one and httpx's default settings.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=LIMITS.max_connections,
            max_keepalive_connections=LIMITS.max_keepalive_connections,
            keepalive_expiry=LIMITS.keepalive_expiry,
            network_backend=_GuardedBackend(policy, resolver),
        )


def guarded_client(
    policy: EgressPolicy, *, max_redirects: int = MAX_REDIRECTS, resolver: Resolver = _getaddrinfo
) -> httpx.AsyncClient:
    """An httpx client whose every request, and every redirect hop, obeys ``policy``."""

    async def check_hop(request: httpx.Request) -> None:
        check_url(str(request.url), policy)

    return httpx.AsyncClient(
        transport=EgressTransport(policy, resolver=resolver),
        follow_redirects=False,
        max_redirects=max_redirects,
        trust_env=False,
        event_hooks={"request": [check_hop]},
    )
