"""`sql.query`: one statement with bound parameters on a connection the runner names.

Safe by construction (decision 0027): the connection URL comes from the process setting
``AMOS_SQL_CONNECTIONS`` (a flow only names the connection), values reach the database as
bind parameters of SQLAlchemy's ``text()`` (the DSL refuses a query holding ``${…}``), and
neither the URL nor its password ever appears in an error. The statement runs in a thread,
in a transaction that commits when it succeeds and rolls back otherwise; its time is bounded
by ``statement_timeout`` on PostgreSQL and by a progress handler on SQLite, and a cancelled
activity interrupts it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import math
import re
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from amosflow.config import SqlSettings
from amosflow.dsl import parse_duration
from amosflow.engine.activities._base import REDACTED, ActionContext, implementation
from amosflow.errors import ActionError

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import Connection, Engine

SETTING = "AMOS_SQL_CONNECTIONS"
SQLITE_PROGRESS_STEPS = 10_000
# SQLSTATE classes and codes after which another attempt may succeed: connection exceptions,
# transaction rollback (serialization failure, deadlock), insufficient resources, operator
# intervention, lock not available.
_RETRYABLE_CLASSES = frozenset({"08", "40", "53", "57"})
_RETRYABLE_CODES = frozenset({"55P03"})
_QUERY_CANCELED = "57014"
# Statements a server-side cursor can hold (PostgreSQL's DECLARE takes SELECT or VALUES).
_READS_ONLY = re.compile(r"^\s*\(*\s*(select|values|table)\b", re.IGNORECASE)
_INTO = re.compile(r"\binto\b", re.IGNORECASE)  # SELECT … INTO creates a table: no cursor
_BACKGROUND = re.compile(r"\s*\(Background on this error at: [^)]*\)")


@dataclass
class _Cached:
    url: str
    engine: Engine


_ENGINES: dict[str, _Cached] = {}
_ENGINES_LOCK = threading.Lock()


class _SqlFailureError(Exception):
    def __init__(self, message: str, type_: str = "SqlError", *, retryable: bool = False) -> None:
        self.type = type_
        self.retryable = retryable
        super().__init__(message)


def _connections() -> dict[str, str]:
    try:
        return SqlSettings().sql_connections
    except ValueError:
        raise _SqlFailureError(
            f"{SETTING} is not a JSON object of connection name to SQLAlchemy URL",
            "SqlConnectionUnknown",
        ) from None


def _engine(name: str) -> tuple[Engine, str]:
    """The process's engine of connection ``name``, made again when its URL changed."""
    connections = _connections()
    url = connections.get(name)
    if url is None:
        known = ", ".join(sorted(connections)) or f"none: set {SETTING}"
        raise _SqlFailureError(
            f"unknown SQL connection {name!r}; configured: {known}", "SqlConnectionUnknown"
        )
    with _ENGINES_LOCK:
        cached = _ENGINES.get(name)
        if cached is not None and cached.url == url:
            return cached.engine, url
        try:
            engine = create_engine(url, pool_pre_ping=True)
        except (SQLAlchemyError, ValueError, ImportError) as err:
            raise _SqlFailureError(
                _clean(
                    f"SQL connection {name!r} cannot be set up: {type(err).__name__}: {err}",
                    url,
                )
            ) from None
        if cached is not None:
            cached.engine.dispose()
        _ENGINES[name] = _Cached(url, engine)
        return engine, url


def dispose_engines() -> None:
    """Close every cached engine (tests; a worker keeps its engines for its lifetime)."""
    with _ENGINES_LOCK:
        for cached in _ENGINES.values():
            cached.engine.dispose()
        _ENGINES.clear()


def _clean(message: str, url: str) -> str:
    """Take the URL and its password out of a message."""
    hidden = [url]
    with contextlib.suppress(Exception):
        parsed = make_url(url)
        hidden.append(parsed.render_as_string(hide_password=False))
        if parsed.password:
            hidden.append(str(parsed.password))
    for value in sorted(hidden, key=len, reverse=True):
        if value:
            message = message.replace(value, REDACTED)
    return message


# -- JSON values -----------------------------------------------------------------------------


def _float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _isoformat(value: dt.date | dt.time) -> str:
    return value.isoformat()


def _seconds(value: dt.timedelta) -> float:
    return value.total_seconds()


def _base64(value: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


_CONVERTERS: tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...] = (
    (float, _float),
    (Decimal, str),
    ((dt.datetime, dt.date, dt.time), _isoformat),
    (dt.timedelta, _seconds),
    ((bytes, bytearray, memoryview), _base64),
)


def to_json(value: Any) -> Any:
    """Turn a value a driver returned into JSON (see ``SqlQueryWith`` for the mapping)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(item) for item in value]
    for kinds, convert in _CONVERTERS:
        if isinstance(value, kinds):
            return convert(value)
    return str(value)  # UUID, network addresses, enums, …


# -- running ---------------------------------------------------------------------------------


@dataclass
class _Statement:
    """One statement's run in a worker thread, which the event loop may interrupt."""

    query: str
    params: dict[str, Any]
    max_rows: int
    timeout_s: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    raw: Any = None
    interrupted: bool = False
    timed_out: bool = False

    def run(self, engine: Engine) -> dict[str, Any]:
        with engine.begin() as conn:
            self._attach(conn)
            try:
                self._bound_time(conn)
                statement = text(self.query)
                if _READS_ONLY.match(self.query) and not _INTO.search(self.query):
                    # A server-side cursor where the driver has one: only the rows fetched
                    # (max_rows + 1) ever reach this process, however large the result.
                    statement = statement.execution_options(
                        stream_results=True, max_row_buffer=min(self.max_rows + 1, 1000)
                    )
                result = conn.execute(statement, self.params)
                if not result.returns_rows:
                    return {
                        "columns": [],
                        "rows": [],
                        "rowcount": result.rowcount,
                        "truncated": False,
                    }
                columns = list(result.keys())
                if len(set(columns)) != len(columns):
                    raise _SqlFailureError(
                        f"the result has duplicate column names ({', '.join(columns)}):"
                        " give them distinct aliases"
                    )
                fetched = result.fetchmany(self.max_rows + 1)
                result.close()
            finally:
                self._detach(conn)
        rows = [
            {column: to_json(value) for column, value in zip(columns, row, strict=True)}
            for row in fetched[: self.max_rows]
        ]
        return {
            "columns": columns,
            "rows": rows,
            "rowcount": len(rows),
            "truncated": len(fetched) > self.max_rows,
        }

    def _attach(self, conn: Connection) -> None:
        with self.lock:
            self.raw = conn.connection.dbapi_connection
            if self.interrupted:
                raise _SqlFailureError("the statement was cancelled", "SqlCancelled")

    def _detach(self, conn: Connection) -> None:
        with self.lock:
            raw, self.raw = self.raw, None
        if conn.dialect.name == "sqlite" and raw is not None:
            with contextlib.suppress(Exception):  # the pooled connection keeps no handler
                raw.set_progress_handler(None, 0)

    def _bound_time(self, conn: Connection) -> None:
        dialect = conn.dialect.name
        if dialect == "postgresql":
            milliseconds = max(1, int(self.timeout_s * 1000))
            conn.execute(
                text("SELECT set_config('statement_timeout', :ms, true)"),
                {"ms": str(milliseconds)},
            )
        elif dialect == "sqlite":
            deadline = time.monotonic() + self.timeout_s

            def past_deadline() -> int:
                if time.monotonic() > deadline:
                    self.timed_out = True
                    return 1
                return 0

            raw = conn.connection.dbapi_connection
            if raw is not None:
                raw.set_progress_handler(past_deadline, SQLITE_PROGRESS_STEPS)

    def interrupt(self) -> None:
        """Ask the database to stop the running statement (called from another thread)."""
        with self.lock:
            self.interrupted = True
            raw = self.raw
            if raw is None:
                return
            with contextlib.suppress(Exception):
                if hasattr(raw, "interrupt"):  # sqlite3
                    raw.interrupt()
                elif hasattr(raw, "cancel_safe"):  # psycopg 3.2+
                    raw.cancel_safe(timeout=5.0)
                elif hasattr(raw, "cancel"):
                    raw.cancel()


def _retryable(err: DBAPIError, dialect: str) -> bool:
    if err.connection_invalidated:
        return True
    code = getattr(err.orig, "sqlstate", None) or getattr(err.orig, "pgcode", None)
    if isinstance(code, str) and code:
        return code[:2] in _RETRYABLE_CLASSES or code in _RETRYABLE_CODES
    detail = str(err.orig).lower()
    if "database is locked" in detail or "database is busy" in detail:
        return True
    return isinstance(err, OperationalError) and dialect != "sqlite"


def _failure(
    ctx: ActionContext, name: str, url: str, err: SQLAlchemyError, statement: _Statement
) -> ActionError:
    dialect = make_url(url).get_backend_name() if url else ""
    orig = getattr(err, "orig", None)
    code = getattr(orig, "sqlstate", None)
    if statement.timed_out or (code == _QUERY_CANCELED and not statement.interrupted):
        return ActionError(
            f"sql.query on {name!r}: the statement ran longer than its timeout"
            f" ({statement.timeout_s:g}s) and was stopped; its transaction was rolled back",
            type_="SqlTimeout",
            retryable=True,
        )
    # The driver's own message, never SQLAlchemy's rendering (which holds the SQL and params).
    detail = str(orig) if orig is not None else str(err).split("\n[SQL:", 1)[0]
    detail = _BACKGROUND.sub("", detail).strip() or type(err).__name__
    retryable = _retryable(err, dialect) if isinstance(err, DBAPIError) else False
    message = _clean(f"sql.query on {name!r} failed: {detail}", url)
    return ActionError(ctx.redact(message), type_="SqlError", retryable=retryable)


@implementation("sql.query")
async def query(ctx: ActionContext, params: Any) -> dict[str, Any]:
    """Run the statement; return columns, rows (JSON values), rowcount and truncated."""
    name = params.connection
    statement = _Statement(
        query=params.query,
        params=dict(params.params),
        max_rows=params.max_rows,
        timeout_s=parse_duration(params.timeout).total_seconds(),
    )
    url = ""

    def work() -> dict[str, Any]:
        nonlocal url
        engine, url = _engine(name)
        return statement.run(engine)

    running = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        # The activity was cancelled: stop the statement so its transaction rolls back.
        await asyncio.to_thread(statement.interrupt)
        with contextlib.suppress(BaseException):
            await running
        raise
    except _SqlFailureError as err:
        message = f"sql.query: {err}"
        raise ActionError(
            ctx.redact(_clean(message, url) if url else message),
            type_=err.type,
            retryable=err.retryable,
        ) from None
    except SQLAlchemyError as err:
        raise _failure(ctx, name, url, err, statement) from None
