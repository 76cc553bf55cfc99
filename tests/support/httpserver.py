"""A real HTTP server on loopback for tests: records every request and answers by route."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class LoopbackServer:
    """Threaded HTTP server; ``fail_first`` makes the first N hits of a path answer 503."""

    requests: list[Recorded] = field(default_factory=list)
    fail_first: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    hits: Counter[str] = field(default_factory=Counter)
    polls_until_done: int = 3
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def keys(self) -> Counter[str]:
        """How often each Idempotency-Key arrived (successful answers only)."""
        with self.lock:
            return Counter(
                r.headers.get("idempotency-key", "") for r in self.requests if r.path != "/fail"
            )

    def start(self) -> LoopbackServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                with owner.lock:
                    remaining = owner.fail_first.get(path, 0)
                    if remaining:
                        owner.fail_first[path] = remaining - 1
                    else:
                        owner.requests.append(
                            Recorded(
                                self.command,
                                self.path,
                                {k.lower(): v for k, v in self.headers.items()},
                                body,
                            )
                        )
                if remaining:
                    self._send(503, {"error": "try again"})
                    return
                if path.startswith("/status/"):
                    self._send(int(path.rsplit("/", 1)[1]), {"status": path})
                    return
                with owner.lock:
                    owner.hits[path] += 1
                    hits = owner.hits[path]
                payload: dict[str, Any] = {
                    "state": "done" if hits >= owner.polls_until_done else "running",
                    "method": self.command,
                    "path": self.path,
                    "idempotency_key": self.headers.get("idempotency-key"),
                    "authorization": self.headers.get("authorization"),
                    "items": [
                        {"sku": "A-1", "qty": 2, "price": 9.5},
                        {"sku": "B-7", "qty": 1, "price": 120.0},
                    ],
                }
                if body:
                    try:
                        payload["received"] = json.loads(body)
                    except ValueError:
                        payload["received"] = body.decode(errors="replace")
                self._send(200, payload)

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
