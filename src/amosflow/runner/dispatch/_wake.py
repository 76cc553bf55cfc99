"""Wake waiting lease long-polls when a job is queued, instead of polling the store for it.

Two ways in, one way out. A job queued in this process (the single node: the dispatch
activity runs on the control worker beside the runner endpoint) wakes the waiters at once
through the store's ``JobSignal``. A job queued in another process reaches them through
PostgreSQL ``NOTIFY`` on ``CHANNEL``, sent in the transaction that queues the job (so it is
delivered only if the job was committed) and turned into the same signal by one listening
connection per store. SQLite has no cross-process notification; its single node shares a
process. A lost notification costs one fallback poll interval, never the job: the long-poll
still looks at the store now and then, and the store stays the only truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from amosflow.store import Store

log = logging.getLogger(__name__)
CHANNEL = "amos_runner_jobs"
#: How long a long-poll waits for a notification before it looks at the store anyway.
FALLBACK_POLL_S = 1.0
_RECONNECT_S = 1.0


class JobSignal:
    """A generation counter that lease long-polls wait on; thread-safe, any event loop.

    A waiter reads ``generation`` before it looks at the store and then waits for a newer
    one, so a job queued between the look and the wait is never missed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    @property
    def generation(self) -> int:
        """How many notifications there have been so far."""
        return self._generation

    @property
    def waiting(self) -> int:
        """How many long-polls wait on this signal now."""
        with self._lock:
            return len(self._waiters)

    def notify(self) -> None:
        """Wake every waiter; callable from any thread."""
        with self._lock:
            self._generation += 1
            waiters, self._waiters = self._waiters, set()
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # its loop has closed meanwhile
                loop.call_soon_threadsafe(_resolve, future)

    async def wait(self, seen: int, seconds: float) -> bool:
        """Wait until the generation passes ``seen``, at most ``seconds``; True when it did."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._lock:
            if self._generation != seen:
                return True
            self._waiters.add(entry)
        try:
            await asyncio.wait_for(future, seconds)
        except TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiters.discard(entry)
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_signals: weakref.WeakKeyDictionary[Engine, JobSignal] = weakref.WeakKeyDictionary()
_listeners: weakref.WeakKeyDictionary[Engine, _Listener] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def job_signal(store: Store) -> JobSignal:
    """The signal of ``store``'s database in this process (one per engine)."""
    with _registry_lock:
        signal = _signals.get(store.engine)
        if signal is None:
            signal = _signals[store.engine] = JobSignal()
        return signal


def announce(session: Session) -> None:
    """Tell other processes a job was queued; delivered when ``session`` commits (PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


def job_queued(store: Store) -> None:
    """Wake this process's waiters for ``store`` (call after the job's transaction committed)."""
    job_signal(store).notify()


def listen(store: Store) -> None:
    """Turn ``store``'s PostgreSQL notifications into its signal, once per engine; SQLite: no-op."""
    if store.dialect != "postgresql":
        return
    signal = job_signal(store)
    with _registry_lock:
        if store.engine in _listeners:
            return
        listener = _listeners[store.engine] = _Listener(store.engine, signal)
    listener.start()


def is_listening(store: Store) -> bool:
    """Whether ``store``'s notifications are being listened to at this moment."""
    with _registry_lock:
        listener = _listeners.get(store.engine)
    return listener is not None and listener.ready.is_set()


def stop_listening(store: Store) -> None:
    """Stop ``store``'s listening connection, if there is one (before disposing the store)."""
    with _registry_lock:
        listener = _listeners.pop(store.engine, None)
    if listener is not None:
        listener.stop()


class _Listener:
    """One connection that LISTENs on ``CHANNEL`` in a daemon thread and signals each NOTIFY."""

    def __init__(self, engine: Engine, signal: JobSignal) -> None:
        self._engine = engine
        self._signal = signal
        self._stopping = threading.Event()
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="runner-jobs-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg  # noqa: PLC0415 - only a PostgreSQL store listens; SQLite never loads it

        while not self._stopping.is_set():
            try:
                self._listen()
            except (psycopg.Error, SQLAlchemyError, OSError) as err:  # the polls cover the gap
                log.warning("runner job notifications lost (%s); listening again", err)
            self._stopping.wait(_RECONNECT_S)

    def _listen(self) -> None:
        # A connection of its own, taken out of the pool for good: it sits in LISTEN.
        pooled = self._engine.raw_connection()
        connection = pooled.driver_connection
        pooled.detach()
        if connection is None:  # pragma: no cover - a live pooled connection has one
            pooled.close()
            return
        try:
            connection.autocommit = True
            connection.execute(f"LISTEN {CHANNEL}")
            self.ready.set()
            # Anything queued while no one listened is found by the waiters' next look.
            self._signal.notify()
            while not self._stopping.is_set():
                for _ in connection.notifies(timeout=_RECONNECT_S):
                    self._signal.notify()
        finally:
            self.ready.clear()
            connection.close()
