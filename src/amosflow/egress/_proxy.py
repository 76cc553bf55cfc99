"""A forward HTTP proxy on loopback for clients that take no transport (Chromium)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self
from urllib.parse import urlsplit

import httpcore

from amosflow.egress._addresses import SCHEMES, _split_port
from amosflow.egress._policy import EgressDeniedError, EgressPolicy, _host_port, check_url
from amosflow.egress._transport import Resolver, _getaddrinfo, resolve

_HEAD_LIMIT = 64 * 1024


_RELAY_CHUNK = 64 * 1024


_DROPPED_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization"}
)


#: Marks the proxy's own answers: ``refused`` (the policy) or ``failed`` (the destination).
ANSWER_HEADER = "x-amos-egress"


class _ProxyAnswer(Exception):  # noqa: N818 - an answer, not a failure of ours
    """A response the proxy gives instead of connecting (a refusal or a failure upstream)."""

    def __init__(self, status: str, text: str, *, refused: bool = False) -> None:
        self.status, self.text = status, text
        self.kind = "refused" if refused else "failed"
        super().__init__(text)


class EgressProxy:
    """A forward HTTP proxy on 127.0.0.1 that connects only where ``policy`` opens.

    It speaks ``CONNECT host:port`` (HTTPS, WebSockets, anything tunnelled) and absolute-form
    ``GET http://host/…`` requests, one per client connection. Each destination is resolved
    once, every address checked, and the connection made to the checked address; a refusal is
    a ``403`` carrying the reason and ``x-amos-egress: refused``, sent before anything
    reaches the destination (a destination that cannot be reached: ``502``/``504`` and
    ``x-amos-egress: failed``). No credentials are asked: it opens nothing the host
    could not reach itself, and it lives as long as the job that started it.
    """

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        resolver: Resolver = _getaddrinfo,
        connect_timeout: float = 30.0,
    ) -> None:
        self.policy = policy
        self._resolver = resolver
        self._connect_timeout = connect_timeout
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The proxy's address, ``http://127.0.0.1:<port>`` (once started)."""
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> Self:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=_HEAD_LIMIT)
        return self

    async def aclose(self) -> None:
        """Stop listening and cut every open tunnel."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away or sent garbage: nothing to answer
        except asyncio.CancelledError:
            pass  # aclose cut the tunnel; asyncio would log a cancelled connection task
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        line, _, headers = head.partition("\r\n")
        try:
            method, target, version = line.split(" ")
            if method == "CONNECT":
                host, port = _authority(target)
                upstream = await self._open(host, port)
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                host, port, request = _forwarded(method, target, version, headers, self.policy)
                upstream = await self._open(host, port)
                upstream[1].write(request)
        except _ProxyAnswer as answer:
            await _answer(writer, answer)
            return
        except ValueError as err:
            await _answer(writer, _ProxyAnswer("400 Bad Request", f"bad proxy request: {err}"))
            return
        await _relay(reader, writer, *upstream)

    async def _open(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Resolve once, check every address, connect to a checked one."""
        failure: OSError | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                addresses = await resolve(host, port, self.policy, resolver=self._resolver)
                for address in addresses:
                    try:
                        return await asyncio.open_connection(address, port)
                    except OSError as err:
                        failure = err
        except EgressDeniedError as err:
            raise _ProxyAnswer("403 Forbidden", str(err), refused=True) from None
        except httpcore.ConnectError as err:
            raise _ProxyAnswer("502 Bad Gateway", str(err)) from None
        except TimeoutError:
            raise _ProxyAnswer("504 Gateway Timeout", f"connecting to {host} timed out") from None
        raise _ProxyAnswer("502 Bad Gateway", f"cannot connect to {host}: {failure}")


def _authority(target: str) -> tuple[str, int]:
    """``host:port`` of a CONNECT request (``[v6]:port`` for IPv6); the port is required."""
    host, port = _split_port(target) if target.startswith("[") else _host_port(target)
    if port is None:
        raise ValueError(f"CONNECT {target[:100]!r} names no port")
    return host, port


def _forwarded(
    method: str, target: str, version: str, headers: str, policy: EgressPolicy
) -> tuple[str, int, bytes]:
    """Host, port and the origin-form request to send for an absolute-form proxy request."""
    if not version.startswith("HTTP/1.") or not target.lower().startswith("http://"):
        raise ValueError("only CONNECT and absolute http:// requests are proxied")
    try:
        check_url(target, policy)
    except EgressDeniedError as err:
        raise _ProxyAnswer("403 Forbidden", str(err), refused=True) from None
    parts = urlsplit(target)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    kept = [
        h
        for h in headers.split("\r\n")
        if h and h.partition(":")[0].strip().lower() not in _DROPPED_HEADERS
    ]
    # One request per connection: a client may send its next request for another host.
    request = "\r\n".join([f"{method} {path} {version}", *kept, "Connection: close", "", ""])
    return parts.hostname or "", parts.port or SCHEMES["http"], request.encode("latin-1")


async def _answer(writer: asyncio.StreamWriter, answer: _ProxyAnswer) -> None:
    body = answer.text.encode()
    writer.write(
        f"HTTP/1.1 {answer.status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"{ANSWER_HEADER}: {answer.kind}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(_RELAY_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


async def _relay(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways until the destination is done; the client's end of input half-closes."""
    sending = asyncio.ensure_future(_copy(client_reader, upstream_writer))
    try:
        await _copy(upstream_reader, client_writer)
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        upstream_writer.close()
