"""Open an MCP client session to a server definition, over stdio or streamable HTTP.

The MCP SDK is imported on first use: the API and the worker start without it. An HTTP
server is reached only where the egress policy allows: its URL is checked before connecting,
and every request the SDK makes is checked again (decision 0039).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from amosflow import egress
from amosflow.errors import McpError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx2
    from mcp import ClientSession, types

    from amosflow.ai.mcp._definition import McpServer


def default_policy() -> egress.EgressPolicy:
    """The policy outside a run (approvals): the worker's own allow entries only."""
    return egress.EgressPolicy.from_config(
        {}, extra_allow=egress.worker_allow(), internal_ports=egress.internal_ports()
    )


def _guarded_client(policy: egress.EgressPolicy) -> httpx2.AsyncClient:
    """An HTTP client for the SDK that refuses every request the policy does not allow."""
    import httpx2  # noqa: PLC0415 - the SDK's HTTP library, loaded with it
    from mcp.shared._httpx_utils import (  # noqa: PLC0415
        MCP_DEFAULT_SSE_READ_TIMEOUT,
        MCP_DEFAULT_TIMEOUT,
    )

    class _Checked(httpx2.AsyncBaseTransport):
        def __init__(self) -> None:
            self._inner = httpx2.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            egress.check_url(str(request.url), policy)
            return await self._inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self._inner.aclose()

    timeout = httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT)
    return httpx2.AsyncClient(transport=_Checked(), timeout=timeout)


@contextlib.asynccontextmanager
async def open_session(
    server: McpServer, policy: egress.EgressPolicy | None = None
) -> AsyncIterator[ClientSession]:
    """An initialised session to ``server``; the process or connection ends with the block."""
    from mcp import ClientSession, StdioServerParameters  # noqa: PLC0415 - see module
    from mcp.client.stdio import stdio_client  # noqa: PLC0415
    from mcp.client.streamable_http import streamable_http_client  # noqa: PLC0415

    if server.transport != "stdio":
        assert server.url is not None  # the definition's validator made sure
        egress.check_url(server.url, policy or default_policy())  # a clear refusal, up front
    async with contextlib.AsyncExitStack() as stack:
        try:
            if server.transport == "stdio":
                assert server.command is not None  # the definition's validator made sure
                params = StdioServerParameters(
                    command=server.command[0], args=server.command[1:], env=server.env or None
                )
                read, write = await stack.enter_async_context(stdio_client(params))
            else:
                assert server.url is not None
                client = await stack.enter_async_context(
                    _guarded_client(policy or default_policy())
                )
                read, write = await stack.enter_async_context(
                    streamable_http_client(server.url, http_client=client)
                )
            session = await stack.enter_async_context(
                ClientSession(read, write, read_timeout_seconds=server.timeout_s)
            )
            await session.initialize()
        except McpError:
            raise
        except Exception as err:
            raise McpError(f"cannot reach MCP server {server.name!r}: {_reason(err)}") from None
        yield session


async def list_all_tools(session: ClientSession, server: str) -> list[types.Tool]:
    """Every tool the server lists, following pagination."""
    from mcp import types  # noqa: PLC0415 - see module

    tools: list[types.Tool] = []
    cursor: str | None = None
    try:
        while True:
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                return tools
    except Exception as err:
        raise McpError(f"cannot list the tools of MCP server {server!r}: {_reason(err)}") from None


def _reason(err: BaseException) -> str:
    """The innermost message of an error, unwrapping the exception groups of task groups."""
    while isinstance(err, BaseExceptionGroup) and err.exceptions:
        err = err.exceptions[0]
    return str(err) or type(err).__name__
