"""Real syslog receivers on loopback for SIEM tests, and parsers for what they receive.

``TcpReceiver`` reads RFC 6587 octet-counted frames, ``UdpReceiver`` one message per
datagram; both run in threads the test starts and stops. ``parse_syslog`` and ``parse_cef``
undo the framing and escaping the forwarder applies, so tests compare real fields.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SYSLOG = re.compile(
    rb"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) "
    rb"(?P<msgid>\S+) - (?P<msg>.*)",
    re.DOTALL,
)


def until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it is truthy or the deadline passes (then fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.02)  # polling a condition another thread or process makes true


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Receiver:
    """Collects raw messages; ``wait_for(n)`` blocks until n arrived or a deadline passes."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.connections = 0
        self._changed = threading.Condition()
        self._threads: list[threading.Thread] = []

    def _got(self, message: bytes) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def _start(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._threads.append(thread)

    def wait_for(self, count: int, timeout: float = 15.0) -> list[bytes]:
        """Wait until at least ``count`` messages arrived; return them all."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"{len(self.messages)} of {count} syslog messages arrived")
            return list(self.messages)


class TcpReceiver(_Receiver):
    """A syslog-over-TCP receiver (RFC 6587 octet counting) on 127.0.0.1."""

    def __init__(self, port: int = 0) -> None:
        super().__init__()
        self._server = socket.create_server(("127.0.0.1", port))
        self.port = int(self._server.getsockname()[1])
        self._clients: list[socket.socket] = []
        self._start(self._accept)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed by stop()
            self.connections += 1
            self._clients.append(client)
            self._start(lambda c=client: self._read(c))

    def _read(self, client: socket.socket) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                while b" " in buffer:
                    length, _, rest = buffer.partition(b" ")
                    assert length.isdigit(), f"not an octet count: {buffer[:40]!r}"
                    if len(rest) < int(length):
                        break
                    self._got(rest[: int(length)])
                    buffer = rest[int(length) :]

    def stop(self) -> None:
        """Close the listener and every connection, as a receiver going down does."""
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._server.close()
        for client in self._clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()
        for thread in self._threads:
            thread.join(5)


class UdpReceiver(_Receiver):
    """A syslog-over-UDP receiver on 127.0.0.1: one message per datagram."""

    def __init__(self, port: int = 0) -> None:
        super().__init__()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", port))
        self.port = int(self._sock.getsockname()[1])
        self._start(self._read)

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                datagram = self._sock.recv(65536)
                if datagram == b"":
                    return
                self._got(datagram)

    def stop(self) -> None:
        """Stop receiving."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        for thread in self._threads:
            thread.join(5)


@dataclass(frozen=True)
class SyslogMessage:
    """The parts of one RFC 5424 message."""

    facility: int
    severity: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    message: str


def parse_syslog(raw: bytes) -> SyslogMessage:
    """Split an RFC 5424 line (no structured data) into its fields; fail if it is not one."""
    match = SYSLOG.fullmatch(raw)
    assert match is not None, f"not RFC 5424: {raw[:80]!r}"
    pri = int(match["pri"])
    return SyslogMessage(
        facility=pri // 8,
        severity=pri % 8,
        timestamp=match["ts"].decode(),
        hostname=match["host"].decode(),
        app_name=match["app"].decode(),
        procid=match["procid"].decode(),
        msgid=match["msgid"].decode(),
        message=match["msg"].decode(),
    )


def _unescape(text: str, specials: str) -> str:
    out, chars = [], iter(text)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        following = next(chars)
        if following == "n":
            out.append("\n")
        elif following == "r":
            out.append("\r")
        else:
            assert following in specials, f"bad escape \\{following} in {text!r}"
            out.append(following)
    return "".join(out)


@dataclass(frozen=True)
class Cef:
    """A parsed CEF:0 line: the seven header fields and the extension as a dict."""

    header: list[str]
    extension: dict[str, str]


def parse_cef(line: str) -> Cef:
    """Parse CEF as a SIEM does: ``|`` ends a header field unless escaped; ``key=`` starts a value."""
    assert "\n" not in line, "a CEF line must be one line"
    assert "\r" not in line, "a CEF line must be one line"
    header: list[str] = []
    field, index = [], 0
    while len(header) < 7:
        char = line[index]
        if char == "\\":
            field.append(line[index : index + 2])
            index += 2
            continue
        if char == "|":
            header.append(_unescape("".join(field), "\\|"))
            field = []
        else:
            field.append(char)
        index += 1
    rest = line[index:]
    # A key starts after an unescaped space: " key=" where "=" is not escaped.
    starts = [
        m for m in re.finditer(r"(?:^| )([A-Za-z0-9_]+)=", rest) if not _escaped(rest, m.end() - 1)
    ]
    extension: dict[str, str] = {}
    for this, following in zip(starts, [*starts[1:], None], strict=True):
        end = following.start() if following is not None else len(rest)
        extension[this[1]] = _unescape(rest[this.end() : end], "\\=")
    return Cef(header, extension)


def _escaped(text: str, position: int) -> bool:
    backslashes = 0
    while position - 1 - backslashes >= 0 and text[position - 1 - backslashes] == "\\":
        backslashes += 1
    return backslashes % 2 == 1
