"""Real loopback servers for the browser egress tests: HTTP pages, WebSocket echo, UDP sink.

``WebSocketSite`` is one threaded server that serves a page opening a WebSocket (from the
page or from a dedicated worker) to a target URL, and answers WebSocket upgrades itself with
an echo of the first message (RFC 6455, text frames only). It records every connection it
accepts, before reading a byte, so a test can assert that a refused connection never arrived.
``UdpSink`` records every datagram sent to it (a STUN server that never answers).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import socket
import socketserver
import struct
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_SMALL = 126

# The page shows the outcome in #ws and marks it done; the flow waits for #ws[data-done].
_PAGE = """<!doctype html><html><body><h1>{title}</h1><p id="ws">pending</p>
<script>
const target = {target};
const show = (text) => {{
  const p = document.getElementById("ws");
  if (p.dataset.done) return;
  p.textContent = text;
  p.dataset.done = "1";
}};
const source = `
  const ws = new WebSocket(${{JSON.stringify(target)}});
  ws.onopen = () => ws.send("ping");
  ws.onmessage = (e) => postMessage("echo:" + e.data);
  ws.onerror = () => postMessage("error");
  ws.onclose = (e) => postMessage("closed:" + e.code);
`;
if ({in_worker}) {{
  const worker = new Worker(URL.createObjectURL(new Blob([source])));
  worker.onmessage = (e) => show(e.data);
}} else {{
  const postMessage = show;
  new Function("postMessage", source)(postMessage);
}}
</script></body></html>"""

_RTC_PAGE = """<!doctype html><html><body><p id="rtc">pending</p>
<script>
const pc = new RTCPeerConnection({{iceServers: [{{urls: {stun}}}]}});
pc.createDataChannel("probe");
pc.onicegatheringstatechange = () => {{
  if (pc.iceGatheringState !== "complete") return;
  const p = document.getElementById("rtc");
  p.textContent = "gathered";
  p.dataset.done = "1";
}};
pc.createOffer().then((offer) => pc.setLocalDescription(offer));
</script></body></html>"""


@dataclass
class WebSocketSite:
    """Threaded TCP server on ``host``: pages over HTTP, and a WebSocket echo at any path."""

    host: str = "127.0.0.1"
    port: int = 0
    title: str = "site"
    connections: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: socketserver.ThreadingTCPServer | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the server."""
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_address[1]}"

    @property
    def ws_url(self) -> str:
        """``ws://host:port/echo`` of the server."""
        return self.url.replace("http://", "ws://", 1) + "/echo"

    def page_url(self, target: str, *, in_worker: bool = False) -> str:
        """A page of this server that opens a WebSocket to ``target``."""
        query = urlencode({"target": target, "worker": "1" if in_worker else "0"})
        return f"{self.url}/ws-page?{query}"

    def start(self) -> WebSocketSite:
        """Listen (on ``port``, or a free one) and serve in a daemon thread."""
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                with owner.lock:
                    owner.connections.append(str(self.client_address[0]))
                owner._handle(self.rfile, self.wfile)

        server = socketserver.ThreadingTCPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _handle(self, reader: Any, writer: Any) -> None:
        request = reader.readline().decode("latin-1").strip()
        headers: dict[str, str] = {}
        while (line := reader.readline().decode("latin-1").strip()) != "":
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        with self.lock:
            self.requests.append(request)
        target = request.split(" ")[1] if request.count(" ") == 2 else "/"
        if headers.get("upgrade", "").lower() == "websocket":
            self._echo(reader, writer, headers["sec-websocket-key"])
            return
        parts = urlsplit(target)
        if parts.path == "/ws-page":
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            page = _PAGE.format(
                title=html.escape(self.title),
                target=json.dumps(query["target"]),
                in_worker="true" if query.get("worker") == "1" else "false",
            )
        elif parts.path == "/rtc-page":
            stun = parse_qs(parts.query)["stun"][0]
            page = _RTC_PAGE.format(stun=json.dumps(stun))
        else:
            page = f"<!doctype html><html><body><h1>{html.escape(self.title)}</h1></body></html>"
        body = page.encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n"
            + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
            + body
        )

    def _echo(self, reader: Any, writer: Any, key: str) -> None:
        accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()  # noqa: S324 - RFC 6455
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            + f"sec-websocket-accept: {accept}\r\n\r\n".encode()
        )
        writer.flush()
        message = _read_frame(reader)
        if message is None:
            return
        writer.write(bytes([0x81, len(message)]) + message if len(message) < _SMALL else b"")
        writer.flush()
        _read_frame(reader)  # wait for the client's close (or EOF)


def _read_frame(reader: Any) -> bytes | None:
    """The payload of one client frame (masked, as clients send them); None at EOF."""
    head = reader.read(2)
    if len(head) < 2:
        return None
    length = head[1] & 0x7F
    if length == _SMALL:
        (length,) = struct.unpack("!H", reader.read(2))
    elif length == _SMALL + 1:
        (length,) = struct.unpack("!Q", reader.read(8))
    mask = reader.read(4)
    payload = reader.read(length)
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@dataclass
class UdpSink:
    """A UDP socket on 127.0.0.1 that records the sender of every datagram it receives."""

    datagrams: list[tuple[str, int]] = field(default_factory=list)
    _sock: socket.socket | None = None

    @property
    def port(self) -> int:
        """The port it listens on."""
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    def start(self) -> UdpSink:
        """Bind a free port and record in a daemon thread."""
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        threading.Thread(target=self._receive, daemon=True).start()
        return self

    def _receive(self) -> None:
        assert self._sock is not None
        while True:
            try:
                _, sender = self._sock.recvfrom(2048)
            except OSError:
                return
            self.datagrams.append((str(sender[0]), int(sender[1])))

    def stop(self) -> None:
        """Close the socket (which ends the receiving thread)."""
        if self._sock is not None:
            self._sock.close()
