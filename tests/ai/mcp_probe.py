"""A real MCP server (stdio) that reports what its sandbox lets it do, for the isolation tests.

Usage: ``python mcp_probe.py``. Tools, all read-only: ``read`` (a file's first bytes, or
the error), ``list`` (a directory's names, or the error), ``connect`` (a TCP connection to
host:port, or the error), ``fetch`` (a GET of a URL through the proxy the environment
names, if any) and ``whoami`` (uid, gid and the environment's names).
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.error
import urllib.request
from typing import Any

import anyio
from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server


def _schema(**properties: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": kind} for name, kind in properties.items()},
        "required": list(properties),
    }


TOOLS = [
    types.Tool(name="read", description="Read a file.", input_schema=_schema(path="string")),
    types.Tool(name="list", description="List a directory.", input_schema=_schema(path="string")),
    types.Tool(
        name="connect",
        description="Open a TCP connection.",
        input_schema=_schema(host="string", port="integer"),
    ),
    types.Tool(name="fetch", description="GET a URL.", input_schema=_schema(url="string")),
    types.Tool(name="whoami", description="Who the server runs as.", input_schema=_schema()),
]


def _read(arguments: dict[str, Any]) -> str:
    with open(arguments["path"], "rb") as handle:  # noqa: PTH123 - plain on purpose
        return "read: " + handle.read(200).decode(errors="replace")


def _list(arguments: dict[str, Any]) -> str:
    return "listed: " + ",".join(sorted(os.listdir(arguments["path"])))  # noqa: PTH208


def _connect(arguments: dict[str, Any]) -> str:
    with socket.create_connection((arguments["host"], arguments["port"]), timeout=5):
        return "connected"


def _fetch(arguments: dict[str, Any]) -> str:
    with urllib.request.urlopen(arguments["url"], timeout=10) as response:
        return f"fetched: {response.status}"


def _whoami(_arguments: dict[str, Any]) -> str:
    return f"uid={os.getuid()} gid={os.getgid()} env={','.join(sorted(os.environ))}"


ATTEMPTS = {"read": _read, "list": _list, "connect": _connect, "fetch": _fetch, "whoami": _whoami}


def _attempt(name: str, arguments: dict[str, Any]) -> str:
    try:
        return ATTEMPTS[name](arguments)
    except urllib.error.HTTPError as err:
        return f"refused: HTTP {err.code}: {err.read().decode(errors='replace').strip()}"
    except OSError as err:
        return f"error: {type(err).__name__}: {err.strerror or err}"


async def _list_tools(
    _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(
        tools=[
            tool.model_copy(update={"annotations": types.ToolAnnotations(read_only_hint=True)})
            for tool in TOOLS
        ]
    )


async def _call_tool(
    _ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    text = _attempt(params.name, params.arguments or {})
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


async def _serve() -> None:
    server: Server[Any] = Server("probe", on_list_tools=_list_tools, on_call_tool=_call_tool)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    del sys.argv[1:]
    anyio.run(_serve)
