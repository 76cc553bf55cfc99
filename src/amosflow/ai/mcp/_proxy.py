"""The egress proxy of a sandboxed stdio MCP server: its only way to the network.

A stdio server whose definition lists ``egress_allow`` hosts gets an HTTP proxy (decision
0045): the sandbox relays its connections to a Unix socket in the job directory, served
here. Each request (``CONNECT host:port``, or an absolute ``http://`` URL) is resolved once
through ``egress.resolve`` under the run's policy, every address is checked against the
server's own allow list as well, and the connection goes to a checked address: the server
reaches only what both allow, and DNS rebinding cannot move it elsewhere. A refusal answers
403 with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING, Self
from urllib.parse import urlsplit

import httpcore

from amosflow import egress

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

MAX_HEAD_BYTES = 16 * 1024
HEAD_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 30.0
CHUNK_BYTES = 64 * 1024
HOP_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization"})
SANDBOX_UID = 65534  # a root worker's sandboxes run as nobody, who must reach the socket

_log = logging.getLogger(__name__)


class _RefusedError(Exception):
    """A request the proxy answers itself (malformed, refused, unreachable)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)


def _target(method: str, target: str) -> tuple[str, int, str | None]:
    """Host, port and (for a plain HTTP request) the origin-form path of a proxy request."""
    if method == "CONNECT":
        host, colon, port = target.rpartition(":")
        if not colon or not port.isdigit():
            raise _RefusedError(400, f"CONNECT needs host:port, not {target!r}")
        return host.strip("[]"), int(port), None
    parts = urlsplit(target)
    if parts.scheme != "http" or not parts.hostname:
        raise _RefusedError(400, "only CONNECT and absolute http:// URLs are proxied")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, parts.port or 80, path


def _listening_socket(path: Path) -> socket.socket:
    """A listening Unix socket at ``path`` that only the worker and the sandbox's user reach.

    It is bound through its directory's descriptor: socket paths are limited to 107 bytes.
    """
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(f"/proc/self/fd/{folder}/{path.name}")
    except BaseException:
        sock.close()
        raise
    finally:
        os.close(folder)
    path.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(path, SANDBOX_UID, SANDBOX_UID)
    sock.listen(64)
    sock.setblocking(False)  # noqa: FBT003 - the socket module's own signature
    return sock


def _origin_request(method: str, path: str, version: str, headers: bytes) -> bytes:
    """The request to send upstream: origin-form, and the last one on this connection.

    A client may send its next request for another host down the same connection; closing
    after one answer keeps every request on a connection that was checked for its host.
    """
    kept = [
        header
        for header in headers.decode("latin-1").split("\r\n")
        if header and header.partition(":")[0].strip().lower() not in HOP_HEADERS
    ]
    lines = [f"{method} {path} {version}", *kept, "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then half-close the other side."""
    with contextlib.suppress(OSError):
        while data := await reader.read(CHUNK_BYTES):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


class EgressProxy:
    """An HTTP proxy on a Unix socket that connects where the run's and the server's policy allow.

    Use with ``async with``: it listens from entry to exit; open connections end with it.
    """

    def __init__(
        self, path: Path, *, server: str, allow: list[str], run_policy: egress.EgressPolicy
    ) -> None:
        self._path = path
        self._server_name = server
        self._run = run_policy
        # The server's own list, with the platform's ports closed as in every run's policy.
        self._own = egress.EgressPolicy.from_config(
            {"egress": {"allow": allow}}, internal_ports=run_policy.internal_ports
        )
        self._listener: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._listener = await asyncio.start_unix_server(
            self._accept, sock=_listening_socket(self._path)
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._listener is not None:
            self._listener.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            return
        if len(head) > MAX_HEAD_BYTES:
            return
        line, _, headers = head.partition(b"\r\n")
        try:
            method, target, version = line.decode("latin-1").split(" ", 2)
            host, port, path = _target(method, target)
            upstream_reader, upstream_writer = await self._connect(host, port)
        except _RefusedError as refused:
            _log.warning("MCP server %r: proxy refused: %s", self._server_name, refused.reason)
            await _answer(writer, refused.status, refused.reason)
            return
        except ValueError:
            await _answer(writer, 400, "malformed request line")
            return
        try:
            if path is None:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                upstream_writer.write(_origin_request(method, path, version, headers))
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            upstream_writer.close()

    async def _connect(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            addresses = await egress.resolve(host, port, self._run)
            for address in addresses:
                egress.check_address(address, port, host, self._own)
        except egress.EgressDeniedError as err:
            raise _RefusedError(403, str(err)) from None
        except httpcore.ConnectError as err:
            raise _RefusedError(502, str(err)) from None
        failure = "no address"
        for address in addresses:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    return await asyncio.open_connection(address, port)
            except (OSError, TimeoutError) as err:
                failure = str(err) or type(err).__name__
        raise _RefusedError(502, f"cannot connect to {host}:{port}: {failure}")


async def _answer(writer: asyncio.StreamWriter, status: int, reason: str) -> None:
    body = (reason + "\n").encode()
    phrase = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}.get(status, "Error")
    head = f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain\r\n"
    head += f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    with contextlib.suppress(OSError):
        writer.write(head.encode() + body)
        await writer.drain()
