"""Open the store: one engine per process, tuned per backend, migrated to head on open."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from amosflow.errors import StoreError
from amosflow.store._migrate import upgrade

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator

    from sqlalchemy.engine import URL

BUSY_TIMEOUT_S = 30.0
#: A SQLite file and the -wal, -shm and lock files beside it: the owner's only.
PRIVATE_FILE_MODE = 0o600
_COMPANIONS = ("", "-wal", "-shm", "-journal", ".lock")


class Store:
    """The relational store of the control plane: an engine and a unit-of-work factory."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._readers = sessionmaker(
            engine.execution_options(amos_read_only=True), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        """Backend name (``sqlite`` or ``postgresql``), for the few places that differ."""
        return self.engine.dialect.name

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        """Yield one transaction that commits on success and rolls back on any error.

        On SQLite a writing session takes the single write lock when it begins, so two
        writers queue instead of failing; ``read_only=True`` skips that for pure reads.
        """
        factory = self._readers if read_only else self._sessions
        with factory() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        """Close every pooled connection (call once when the process stops)."""
        self.engine.dispose()


def _normalise(url: str) -> URL:
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        # psycopg (v3) is the driver we ship; bare postgresql:// would ask for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None for an in-memory database or another backend."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in {"", ":memory:"}:
        return None
    if database.startswith("file::memory:"):
        return None
    return Path(database).expanduser()


def _private_files(file: Path) -> None:
    """Create the database file 0600 if it is new, and take group and other bits off it all.

    SQLite gives the -wal and -shm files the database file's mode, so a 0600 database keeps
    every page of it, committed or not, from other users whatever the umask (decision 0049).
    """
    file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    for suffix in _COMPANIONS:
        companion = file.with_name(file.name + suffix)
        with contextlib.suppress(FileNotFoundError, PermissionError):
            info = companion.stat()
            if stat.S_IMODE(info.st_mode) & 0o077 and info.st_uid == os.geteuid():
                companion.chmod(stat.S_IMODE(info.st_mode) & ~0o077)


def _sqlite_engine(url: URL) -> Engine:
    file = _sqlite_file(url)
    in_memory = file is None
    if file is not None:
        _private_files(file)
    # isolation_level=None hands transaction control to the begin hook below.
    connect_args: dict[str, Any] = {
        "check_same_thread": False,
        "timeout": BUSY_TIMEOUT_S,
        "isolation_level": None,
    }
    extra: dict[str, Any] = {"poolclass": StaticPool} if in_memory else {}
    engine = create_engine(url, connect_args=connect_args, **extra)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if not in_memory:
            # WAL itself is persistent in the file and set once by ``open_store``.
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: one writer at a time, waiting on the busy
        # timeout, never the lock-upgrade deadlock that DEFERRED transactions run into.
        read_only = connection.get_execution_options().get("amos_read_only", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


@contextmanager
def _first_open_lock(url: URL) -> Iterator[bool]:
    """Serialise the one-time set-up of a SQLite file across processes; yield whether it is a file.

    Switching a file to WAL needs an exclusive lock, and SQLite answers "database is locked"
    at once, without waiting on the busy timeout, when another connection holds the write
    lock. Two processes starting on a fresh file would collide there, so they take turns on
    a lock file beside the database for the switch and the migrations.
    """
    path = _sqlite_file(url)
    if path is None:
        yield False
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
    lock = os.open(path.with_name(path.name + ".lock"), flags, PRIVATE_FILE_MODE)
    with os.fdopen(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _use_wal(engine: Engine) -> None:
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA journal_mode")
        row = cursor.fetchone()
        if row is None or str(row[0]).lower() != "wal":
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()
    finally:
        raw.close()


def open_store(url: str) -> Store:
    """Create the engine for ``url``, migrate the schema to head and return the store."""
    parsed = _normalise(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    engine = _sqlite_engine(parsed) if sqlite else create_engine(parsed, pool_pre_ping=True)
    try:
        with _first_open_lock(parsed) as is_file:
            if is_file:
                _use_wal(engine)
            upgrade(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreError(f"cannot open the store at {parsed!r}: {exc}") from exc
    return Store(engine)
