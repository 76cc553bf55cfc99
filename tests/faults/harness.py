"""The fault harness: the node's processes under the test's hand, and bounded waits.

A fault test starts real processes (``amos runner start``, ``amos up``, the checkpointer),
hurts them the way the outside battery did (SIGKILL, SIGSTOP/SIGCONT, a stopped Temporal)
and then waits for the system to say it recovered, polling a condition with a bound; it
never sleeps to paper over a race. Every fault it injects is written to ``faults`` so a
failing test prints what happened, in order, with the seed of its schedule.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T | None], *, timeout: float = 30.0, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it answers something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout:g} s")
        time.sleep(0.1)  # polling a live system for a condition, not waiting out a race


@dataclass
class Faults:
    """The faults a test injected, in order, for its failure message."""

    seed: int = 0
    injected: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The fault schedule's dice: rerunning with the seed replays the same schedule.
        self.dice = random.Random(self.seed)  # noqa: S311 - a schedule, not a secret

    def note(self, what: str) -> None:
        """Record one injected fault."""
        self.injected.append(f"{time.strftime('%H:%M:%S')} {what}")

    def __str__(self) -> str:
        return f"seed {self.seed}: " + "; ".join(self.injected)


@dataclass
class Process:
    """One real child process the harness can start, kill, pause and start again."""

    name: str
    argv: Sequence[str]
    env: dict[str, str]
    log: Path
    faults: Faults
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        """Start it (again), its output appended to ``log``."""
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                list(self.argv), env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    @property
    def alive(self) -> bool:
        """Whether it runs now."""
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would; waits until it is gone."""
        assert self.popen is not None
        self.faults.note(f"SIGKILL {self.name} (pid {self.popen.pid})")
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def pause(self) -> None:
        """SIGSTOP: the process holds its sockets and leases but does nothing."""
        assert self.popen is not None
        self.faults.note(f"SIGSTOP {self.name}")
        os.kill(self.popen.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        assert self.popen is not None
        self.faults.note(f"SIGCONT {self.name}")
        os.kill(self.popen.pid, signal.SIGCONT)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait; SIGKILL if it does not go. Idempotent, for teardown."""
        if self.popen is None or self.popen.poll() is not None:
            return
        os.kill(self.popen.pid, signal.SIGCONT)  # a paused process cannot handle SIGTERM
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def output(self) -> str:
        """What it wrote so far, for a failure message."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class TcpProxy:
    """A loopback TCP proxy the harness can cut: a partition between a client and a server.

    ``cut`` resets every open connection and refuses new ones (the peer sees a reset, as
    behind a dropped link); ``restore`` lets connections through again; ``slow`` holds every
    chunk for a while, as a congested link does. Threads, not an event loop, so it serves a
    test's in-process node and child processes alike.
    """

    def __init__(self, upstream: str, faults: Faults) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream = (host or "127.0.0.1", int(port))
        self._faults = faults
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._delay = 0.0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        """Partition: reset what is open and refuse what comes."""
        self._faults.note(f"cut {self.address} -> {self._upstream[1]}")
        with self._lock:
            self._cut = True
            for sock in self._open:
                _reset(sock)
            self._open.clear()

    def restore(self) -> None:
        """Heal the partition."""
        self._faults.note(f"restore {self.address}")
        with self._lock:
            self._cut = False

    def slow(self, delay: float) -> None:
        """Hold each chunk ``delay`` seconds each way (0 heals it); open connections too."""
        if delay:
            self._faults.note(f"slow {self.address} by {delay:g} s")
        self._delay = delay

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                refused = self._cut
            if refused:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            with self._lock:
                if self._cut:  # cut while this connection was being made
                    refused = True
                else:
                    self._open.update((client, server))
            if refused:
                _reset(client)
                _reset(server)
                continue
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if self._delay:
                    time.sleep(self._delay)  # the slowness injected, not a wait for a race
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)


def _reset(sock: socket.socket) -> None:
    """End the connection for its peer at once, with RST (SO_LINGER 0) as a dropped link would.

    ``close`` alone is not enough: while a pump thread is blocked in ``recv`` on the socket,
    the kernel defers the close until that call returns, which on an idle connection is never,
    so the peer (a PostgreSQL backend, say) kept its end open for good and the node ran out of
    database connections. ``shutdown`` wakes the blocked ``recv`` and tells the peer now.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
