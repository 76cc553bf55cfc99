"""Open an MCP client session to a server definition, over stdio or streamable HTTP.

A stdio server runs in a fresh sandbox (decision 0045): the worker's sandbox backend, the
paths ``McpSettings`` names, never ``AMOS_HOME``, and no network unless its definition lists
``egress_allow`` hosts, reached then only through the egress proxy. A server over HTTP is
reached only where the egress policy allows, through a transport that resolves, checks and
connects to the checked address (decision 0039). A session that cannot open fails with an
McpError saying why (the program is missing, what it last wrote to stderr, the HTTP status
an endpoint answered), never with the SDK's task-group wrapping.

The MCP SDK is imported on first use: the API and the worker start without it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from amosflow import egress, sandbox
from amosflow.ai.mcp._proxy import EgressProxy
from amosflow.config import McpSettings
from amosflow.errors import AmosError, McpError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from mcp import ClientSession, types

    from amosflow.ai.mcp._definition import McpServer


def default_policy() -> egress.EgressPolicy:
    """The policy outside a run (approvals): the worker's own allow entries only."""
    return egress.EgressPolicy.from_config(
        {}, extra_allow=egress.worker_allow(), internal_ports=egress.internal_ports()
    )


@contextlib.asynccontextmanager
async def open_session(
    server: McpServer, policy: egress.EgressPolicy | None = None
) -> AsyncIterator[ClientSession]:
    """An initialised session to ``server``; the process or connection ends with the block."""
    stack = contextlib.AsyncExitStack()
    try:
        if server.transport == "stdio":
            session = await _open_stdio(stack, server, policy or default_policy())
        else:
            session = await _open_http(stack, server, policy or default_policy())
    except BaseException:
        await _close(stack)
        raise
    try:
        yield session
    except BaseException as err:
        failure = await _unwound(stack, err)
        if not isinstance(err, asyncio.CancelledError) or _cancelled(failure):
            raise  # the caller's own error, or a cancellation from outside
        # The SDK cancels the caller when the session's own tasks fail: say what failed.
        raise McpError(f"MCP server {server.name!r} failed: {_reason(failure)}") from None
    await _close(stack)


async def _close(stack: contextlib.AsyncExitStack) -> None:
    """End the process or connection; what the SDK raises while tearing down is noise."""
    with contextlib.suppress(Exception):
        await stack.aclose()


async def _unwound(stack: contextlib.AsyncExitStack, err: BaseException) -> BaseException:
    """Exit ``stack`` with ``err`` in flight and return the error that comes out of it.

    The SDK's task groups cancel the waiting caller when one of their tasks fails; given
    the cancellation, they absorb it and raise their tasks' errors instead: the reason.
    """
    try:
        if await stack.__aexit__(type(err), err, err.__traceback__):
            return err
    except BaseException as raised:
        return raised
    return err


def _cancelled(err: BaseException) -> bool:
    """Whether ``err`` is only a cancellation (of the caller, from outside)."""
    return all(isinstance(leaf, asyncio.CancelledError) for leaf in _leaves(err))


async def _open_stdio(
    stack: contextlib.AsyncExitStack, server: McpServer, policy: egress.EgressPolicy
) -> ClientSession:
    """Start the server's command in a fresh sandbox and open a session over its pipes.

    Only a server whose definition lists ``egress_allow`` gets a way out: the egress proxy,
    under ``policy`` and its own list.
    """
    from mcp import ClientSession, StdioServerParameters  # noqa: PLC0415 - see module
    from mcp.client.stdio import stdio_client  # noqa: PLC0415

    assert server.command is not None  # the definition's validator made sure
    cannot = f"MCP server {server.name!r} could not start"
    try:
        backend = await asyncio.to_thread(sandbox.detect_backend)
        settings = McpSettings()
        command = stack.enter_context(
            sandbox.sandboxed_command(
                server.command,
                backend=backend,
                env=server.env,
                read_only=settings.read_paths(),
                writable=settings.write_paths(),
                worker_python=True,
                proxy=bool(server.egress_allow),
            )
        )
    except sandbox.ProgramNotFoundError as err:
        raise McpError(f"{cannot}: command {err.program!r} not found in its sandbox") from None
    except (sandbox.SandboxError, sandbox.SandboxUnavailableError) as err:
        raise McpError(f"{cannot}: {err}") from None
    if command.proxy_socket is not None:
        assert server.egress_allow is not None  # the proxy is asked for only then
        proxy = EgressProxy(
            command.proxy_socket, server=server.name, allow=server.egress_allow, run_policy=policy
        )
        await stack.enter_async_context(proxy)
    errlog = stack.enter_context(command.stderr.open("w", encoding="utf-8"))
    params = StdioServerParameters(command=command.argv[0], args=command.argv[1:], env=command.env)
    # The process gets a stack of its own: when it fails, it is stopped (and its last words
    # are on disk) before the sandbox's job directory goes.
    process = contextlib.AsyncExitStack()
    try:
        read, write = await process.enter_async_context(stdio_client(params, errlog=errlog))
        session = await process.enter_async_context(
            ClientSession(read, write, read_timeout_seconds=server.timeout_s)
        )
        await session.initialize()
    except BaseException as err:
        failure = await _unwound(process, err)
        if _cancelled(failure) or not isinstance(failure, Exception):
            raise failure from None
        said = command.last_error()
        reason = _reason(failure) + (f" (its last error output: {said})" if said else "")
        raise McpError(f"{cannot}: {reason}") from None
    stack.push_async_exit(process)
    return session


async def _open_http(
    stack: contextlib.AsyncExitStack, server: McpServer, policy: egress.EgressPolicy
) -> ClientSession:
    """Connect over streamable HTTP through the guarded transport and open a session."""
    from mcp import ClientSession  # noqa: PLC0415 - see module
    from mcp.client.streamable_http import streamable_http_client  # noqa: PLC0415

    from amosflow.ai.mcp import _http  # noqa: PLC0415 - it loads the SDK's HTTP library

    assert server.url is not None  # the definition's validator made sure
    egress.check_url(server.url, policy)  # a clear refusal, up front
    transport = _http.GuardedTransport(policy)
    connection = contextlib.AsyncExitStack()
    try:
        client = await connection.enter_async_context(_http.guarded_client(transport))
        read, write = await connection.enter_async_context(
            streamable_http_client(server.url, http_client=client)
        )
        session = await connection.enter_async_context(
            ClientSession(read, write, read_timeout_seconds=server.timeout_s)
        )
        await session.initialize()
    except BaseException as err:
        failure = await _unwound(connection, err)
        if _cancelled(failure) or not isinstance(failure, Exception):
            raise failure from None
        cause = _amos_cause(failure)
        if cause is not None:
            raise cause from None  # an egress refusal says which address and why
        where = f"MCP server {server.name!r} at {_shown(server.url)}"
        if transport.failure is not None:
            raise McpError(
                f"{where} did not answer as an MCP server: {transport.failure}"
            ) from None
        raise McpError(f"cannot reach {where}: {_reason(failure)}") from None
    stack.push_async_exit(connection)
    return session


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
        cause = _amos_cause(err)
        if cause is not None:
            raise cause from None
        raise McpError(f"cannot list the tools of MCP server {server!r}: {_reason(err)}") from None


def _shown(url: str) -> str:
    """The URL without credentials, query or fragment (they may carry tokens)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def _leaves(err: BaseException) -> list[BaseException]:
    """The errors inside the exception groups of task groups, depth first."""
    if isinstance(err, BaseExceptionGroup):
        return [leaf for inner in err.exceptions for leaf in _leaves(inner)]
    return [err]


def _amos_cause(err: BaseException) -> AmosError | None:
    """Our own error inside the SDK's wrapping (an egress refusal raised by the transport)."""
    for leaf in _leaves(err):
        current: BaseException | None = leaf
        while current is not None:
            if isinstance(current, AmosError):
                return current
            current = current.__cause__ or current.__context__
    return None


def _reason(err: BaseException) -> str:
    """The innermost message of an error, unwrapping the exception groups of task groups."""
    leaves = _leaves(err)
    first = leaves[0] if leaves else err
    return str(first) or type(first).__name__
