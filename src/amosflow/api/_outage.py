"""A store that is away or a disk that is full answers problem+json, never a traceback.

The database can restart under a running node (its connections die mid-transaction), and a
full disk makes SQLite, the catalog and the artifact store refuse writes. Both surface as
exceptions from deep inside a request (the authentication middleware reads the store before
any route runs), which FastAPI's exception handlers never see. This ASGI middleware wraps
the whole application and answers them as a 503 (``store-unavailable``: try again) or a 507
(``insufficient-storage``: the node cannot write until space is freed), with one log line.
The transaction that met the error was rolled back by the store's unit of work, so nothing
is half written.
"""

from __future__ import annotations

import errno
import json
import logging
import sqlite3
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)
PROBLEM_TYPE = "application/problem+json"
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
#: SQLite's words for a write that found no space (SQLITE_FULL).
_SQLITE_FULL = "database or disk is full"
#: SQLite's words for a database that is busy or cannot be reached right now.
_SQLITE_AWAY = ("database is locked", "disk I/O error", "unable to open database file")


def classify(err: BaseException) -> tuple[int, str, str] | None:
    """The status, slug and detail of an outage error; None for any other error."""
    if _no_space(err):
        return 507, "insufficient-storage", "the node's disk is full; free space and retry"
    if _unavailable(err):
        return 503, "store-unavailable", "the database is unavailable; retry shortly"
    return None


def _unavailable(err: BaseException) -> bool:
    """Whether the database is away or busy, as opposed to refusing this statement."""
    if isinstance(err, PoolTimeoutError):
        return True
    if not isinstance(err, DBAPIError):
        return False
    if err.connection_invalidated:
        return True
    if isinstance(err.orig, sqlite3.Error):
        # SQLite also says OperationalError for a bad statement or a missing table: a bug,
        # which must stay a 500, not pass for an outage.
        return isinstance(err, OperationalError) and any(
            words in str(err.orig) for words in _SQLITE_AWAY
        )
    # The server driver's: connection refused or lost, the server shutting down.
    return isinstance(err, OperationalError | InterfaceError)


def _no_space(err: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _NO_SPACE:
            return True
        if isinstance(current, DBAPIError) and _SQLITE_FULL in str(current.orig):
            return True
        current = current.__cause__ or current.__context__
    return False


class OutageMiddleware:
    """Answers a store outage or a full disk met by any HTTP request as problem+json."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; turn an outage error into a 503 or 507 if nothing was sent."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as err:
            answer = classify(err)
            if answer is None or started:
                raise
            status, slug, detail = answer
            cause = err.orig if isinstance(err, DBAPIError) else err
            log.warning(
                "%s %s answered %s: %s: %s",
                scope["method"],
                scope["path"],
                status,
                type(cause).__name__,
                str(cause).strip().splitlines()[0][:200] if str(cause).strip() else "",
            )
            await _answer(scope, send, status, slug, detail)


async def _answer(scope: Scope, send: Send, status: int, slug: str, detail: str) -> None:
    title = slug.replace("-", " ").capitalize()
    body = json.dumps(
        {"type": f"urn:amosflow:problem:{slug}", "title": title, "status": status, "detail": detail}
    ).encode()
    headers = [
        (b"content-type", PROBLEM_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 503:  # noqa: PLR2004 - a store outage is short: say when to come back
        headers.append((b"retry-after", b"2"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
