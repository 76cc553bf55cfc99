"""The Operator Console's built bundle, served by the API at ``/`` and ``/assets/*``.

The console is a static single-page app (``web/``, built into ``dist/`` here by
``make console``). It talks to the API with a bearer token like any other client, so the
pages themselves hold no data and are the only public paths besides the probes. The router
uses the URL fragment (``/#/runs/<id>``), so the server never needs a catch-all route.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from starlette.staticfiles import StaticFiles

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_SECURITY_POLICY", "DIST", "mount"]

#: Where ``vite build`` writes the bundle (inside the package, so the wheel carries it).
DIST = Path(__file__).parent / "dist"
#: Same origin only, no inline script or style, no frames, no plugins. ``'unsafe-eval'`` is
#: there for the JSON Schema validator of task forms, which compiles schemas to functions
#: (docs/decisions/0036-console-serving-and-csp.md).
_DIRECTIVES = (
    "default-src 'none'",
    "script-src 'self' 'unsafe-eval'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "connect-src 'self'",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
)
CONTENT_SECURITY_POLICY = "; ".join(_DIRECTIVES)
_SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
# Asset names carry a content hash, so a browser may keep them; the page itself is revalidated.
_IMMUTABLE = (b"cache-control", b"public, max-age=31536000, immutable")
_REVALIDATE = (b"cache-control", b"no-cache")

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>AMOS FLOW console not built</title></head>
<body><main><h1>The Operator Console is not built</h1>
<p>This node serves the API, but its package carries no console bundle.
Run <code>make console</code> (it needs Node.js and npm) and restart the node.</p>
<p>The API itself works: see <a href="/api/v1/docs">/api/v1/docs</a> with a token.</p>
</main></body></html>
"""


class _SecureStatic:
    """Serves the hashed assets with the console's security and caching headers."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.app: ASGIApp = StaticFiles(directory=directory, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers to the static app's answer; 404 while there is no bundle."""
        if not self.directory.is_dir():  # StaticFiles would fail with a 500 instead
            await PlainTextResponse("no console bundle", status_code=404)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                cache = _IMMUTABLE if message["status"] == 200 else _REVALIDATE  # noqa: PLR2004
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS, cache]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _headers(*, cache: tuple[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (*_SECURITY_HEADERS, cache)}


def mount(app: FastAPI, dist: Path = DIST) -> None:
    """Serve the console's ``index.html`` at ``/`` and its assets under ``/assets``.

    Without a built bundle ``/`` answers 503 with a page that says how to build it, so a
    node started from a source checkout explains itself instead of showing a bare 404.
    """
    index = dist / "index.html"

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    def console_index() -> Response:
        if not index.is_file():
            return HTMLResponse(NOT_BUILT, status_code=503, headers=_headers(cache=_REVALIDATE))
        return HTMLResponse(index.read_bytes(), headers=_headers(cache=_REVALIDATE))

    app.mount("/assets", _SecureStatic(dist / "assets"), name="console-assets")
