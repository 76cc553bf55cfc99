"""Open an MCP client session to a server definition, over stdio or streamable HTTP.

The MCP SDK is imported on first use: the API and the worker start without it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from amosflow.errors import McpError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from mcp import ClientSession, types

    from amosflow.ai.mcp._definition import McpServer


@contextlib.asynccontextmanager
async def open_session(server: McpServer) -> AsyncIterator[ClientSession]:
    """An initialised session to ``server``; the process or connection ends with the block."""
    from mcp import ClientSession, StdioServerParameters  # noqa: PLC0415 - see module
    from mcp.client.stdio import stdio_client  # noqa: PLC0415
    from mcp.client.streamable_http import streamable_http_client  # noqa: PLC0415

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
                read, write = await stack.enter_async_context(streamable_http_client(server.url))
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
