"""egress.EgressProxy: a forward proxy that connects only where the policy opens, as checked."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from amosflow import egress
from amosflow.egress import EgressPolicy, EgressProxy
from tests.support.httpserver import LoopbackServer

OPEN = EgressPolicy.from_config({})


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def with_proxy(
    policy: EgressPolicy,
    use: Callable[[EgressProxy], Awaitable[Any]],
    resolver: egress.Resolver | None = None,
) -> Any:
    """Start a proxy for ``policy`` on a fresh loop, run ``use`` with it, close it."""

    async def go() -> Any:
        proxy = EgressProxy(policy) if resolver is None else EgressProxy(policy, resolver=resolver)
        async with proxy:
            return await use(proxy)

    return asyncio.run(go())


async def exchange(proxy: EgressProxy, head: str, then: str = "") -> tuple[str, bytes]:
    """Send ``head`` to the proxy (and ``then`` once it answered); return its status line and rest."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(proxy.url))
    try:
        writer.write(head.encode())
        status = (await reader.readline()).decode().strip()
        if then:
            while await reader.readline() not in {b"\r\n", b""}:
                pass  # the rest of the proxy's answer head
            writer.write(then.encode())
        rest = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    return status, rest


def test_a_closed_destination_is_answered_403_and_never_reached(
    http_server: LoopbackServer,
) -> None:
    """CONNECT and absolute requests to a loopback port the policy does not open: 403, no contact."""
    port = port_of(http_server.url)

    async def use(proxy: EgressProxy) -> list[tuple[str, bytes]]:
        return [
            await exchange(proxy, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n"),
            await exchange(proxy, f"GET {http_server.url}/x HTTP/1.1\r\nHost: x\r\n\r\n"),
            await exchange(proxy, "GET http://0xa9fea9fe/ HTTP/1.1\r\nHost: x\r\n\r\n"),
        ]

    answers = with_proxy(OPEN, use)
    for status, rest in answers:
        assert status == "HTTP/1.1 403 Forbidden"
        assert f"{egress.ANSWER_HEADER}: refused".encode() in rest
    assert b"127.0.0.1 is a loopback address" in answers[0][1]
    assert b"cloud metadata" in answers[2][1]
    assert http_server.requests == []


def test_an_open_absolute_request_is_forwarded_once_without_proxy_headers(
    http_server: LoopbackServer,
) -> None:
    """A plain http request through the proxy arrives in origin form, Connection: close."""
    policy = EgressPolicy.from_config(
        {"egress": {"allow": [f"127.0.0.1:{port_of(http_server.url)}"]}}
    )

    async def use(proxy: EgressProxy) -> httpx.Response:
        async with httpx.AsyncClient(proxy=proxy.url, trust_env=False) as client:
            return await client.get(
                http_server.url + "/x?y=1", headers={"proxy-authorization": "Basic eDp5"}
            )

    response = with_proxy(policy, use)
    assert response.status_code == 200
    [seen] = http_server.requests
    assert seen.path == "/x?y=1"
    assert seen.headers["connection"] == "close"
    assert "proxy-authorization" not in seen.headers


def test_a_tunnel_goes_to_the_address_checked_and_a_rebound_name_is_refused(
    http_server: LoopbackServer,
) -> None:
    """One resolution per tunnel, connected to as checked; a later answer of metadata is refused."""
    port = port_of(http_server.url)
    answers = iter([["127.0.0.1"]])

    async def rebinding(_host: str, _port: int) -> list[str]:
        return next(answers, ["169.254.169.254"])

    policy = EgressPolicy.from_config({"egress": {"allow": [f"127.0.0.1:{port}"]}})
    request = f"GET /tunnelled HTTP/1.1\r\nHost: rebind.test:{port}\r\nConnection: close\r\n\r\n"

    async def use(proxy: EgressProxy) -> list[tuple[str, bytes]]:
        connect = f"CONNECT rebind.test:{port} HTTP/1.1\r\n\r\n"
        return [await exchange(proxy, connect, request), await exchange(proxy, connect)]

    (first, body), (second, reason) = with_proxy(policy, use, resolver=rebinding)
    assert first == "HTTP/1.1 200 Connection established"
    assert b"/tunnelled" in body
    assert second == "HTTP/1.1 403 Forbidden"
    assert b"cloud metadata" in reason
    assert [r.path for r in http_server.requests] == ["/tunnelled"]


def test_what_is_not_a_proxy_request_is_answered_400() -> None:
    """Origin-form requests, https:// in absolute form and a CONNECT without a port: 400."""

    async def use(proxy: EgressProxy) -> list[str]:
        heads = [
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET https://example.test/ HTTP/1.1\r\n\r\n",
            "CONNECT example.test HTTP/1.1\r\n\r\n",
            "NONSENSE\r\n\r\n",
        ]
        return [(await exchange(proxy, head))[0] for head in heads]

    assert with_proxy(OPEN, use) == ["HTTP/1.1 400 Bad Request"] * 4


def test_closing_the_proxy_cuts_open_tunnels(http_server: LoopbackServer) -> None:
    """aclose ends a tunnel that is still open, and the port stops accepting."""
    port = port_of(http_server.url)
    policy = EgressPolicy.from_config({"egress": {"allow": [f"127.0.0.1:{port}"]}})

    async def go() -> tuple[bytes, bool]:
        proxy = await EgressProxy(policy).start()
        address = port_of(proxy.url)
        reader, writer = await asyncio.open_connection("127.0.0.1", address)
        writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        await proxy.aclose()
        rest = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        try:
            await asyncio.open_connection("127.0.0.1", address)
        except OSError:
            return rest, True
        return rest, False

    rest, refused = asyncio.run(go())
    assert rest == b""
    assert refused
