"""The fault kinds beyond signals and partitions, each one call a battery can make.

Every injector takes the harness's ``Faults`` and notes what it did, so a failing test (or a
battery that mixes kinds from a seeded schedule) prints the faults in order with the seed:
- ``restart_temporal``: stop the embedded Temporal server and start it on the same port and
  database file, so its history survives;
- ``SmallDisk`` and ``fill_disk``: a size-limited tmpfs the node keeps its files on, filled
  to the last byte and freed again;
- ``ClockFile`` and ``faketime_env``: a runner process whose wall clock is offset by hours
  (libfaketime reads the offset from a file, so it can jump while the process runs);
- ``corrupt_stream``: truncate or scribble over a JetStream stream's block files, or remove
  the stream's directory, while the NATS server is stopped;
- ``restart_postgres``: a fast shutdown of PostgreSQL (open transactions are aborted, every
  connection is dropped) and a start again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.faults.harness import Faults

if TYPE_CHECKING:
    from amosflow.bus.embedded import EmbeddedNats
    from amosflow.engine.embedded import EmbeddedTemporal
    from tests.support.postgres import PostgresServer


# --- Temporal ------------------------------------------------------------------------------


def restart_temporal(
    server: EmbeddedTemporal, faults: Faults, *, while_down: Callable[[], None] | None = None
) -> None:
    """Stop the embedded Temporal server and start it again on its port and database file.

    ``while_down`` runs between the two, for a test that acts while Temporal is away.
    """
    port = server.port
    faults.note(f"stop Temporal (port {port})")
    server.stop()
    if while_down is not None:
        while_down()
    server.port = port  # the same frontend address, so clients reconnect to it
    server.start()
    faults.note(f"start Temporal (port {port})")


# --- A full disk ---------------------------------------------------------------------------


class MountUnavailableError(RuntimeError):
    """The machine cannot mount a small filesystem (not root, or no tmpfs): a failure."""


@dataclass
class SmallDisk:
    """A size-limited tmpfs: the node's files on it see ENOSPC when it is full."""

    path: Path
    size_mb: int

    @classmethod
    @contextlib.contextmanager
    def mounted(cls, size_mb: int) -> Iterator[SmallDisk]:
        """Mount a tmpfs of ``size_mb`` MiB in a new directory; unmount and remove it after."""
        path = Path(tempfile.mkdtemp(prefix="amos-disk-"))
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            path.rmdir()
            raise MountUnavailableError(
                f"cannot mount a {size_mb} MiB tmpfs at {path} (needs root): {done.stderr}"
            )
        try:
            yield cls(path, size_mb)
        finally:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
            with contextlib.suppress(OSError):
                path.rmdir()

    def free_bytes(self) -> int:
        """What is left on it."""
        return shutil.disk_usage(self.path).free


def fill_disk(disk: SmallDisk, faults: Faults) -> Path:
    """Fill ``disk`` to its last byte with one ballast file; return the file (delete it to free).

    The file is written in chunks until the filesystem refuses (ENOSPC), then the remaining
    bytes one small chunk at a time, so nothing is left for the node to write.
    """
    ballast = disk.path / "ballast"
    chunk = b"\0" * (1 << 20)
    with ballast.open("ab", buffering=0) as out:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    out.write(chunk[:size])
    faults.note(f"fill {disk.path} ({disk.free_bytes()} bytes left)")
    return ballast


def free_disk(ballast: Path, faults: Faults) -> None:
    """Delete the ballast ``fill_disk`` wrote."""
    ballast.unlink(missing_ok=True)
    faults.note(f"free {ballast.parent}")


# --- A clock jump on the runner ------------------------------------------------------------

LIBFAKETIME_DIRS = (
    Path("/usr/lib/x86_64-linux-gnu/faketime"),
    Path("/usr/lib/aarch64-linux-gnu/faketime"),
    Path("/usr/lib/faketime"),
    Path("/usr/local/lib/faketime"),
)
NO_FAKETIME = (
    "libfaketime is not installed: the runner clock-jump test needs it "
    "(`apt-get install faketime`, part of `make deps`)"
)


def libfaketime() -> Path:
    """The libfaketime library to preload; a clear failure when it is missing."""
    for directory in LIBFAKETIME_DIRS:
        library = directory / "libfaketime.so.1"
        if library.is_file():
            return library
    raise FileNotFoundError(NO_FAKETIME)


@dataclass
class ClockFile:
    """The offset a faked process's wall clock runs at, read again on every clock call."""

    path: Path

    def jump(self, seconds: float, faults: Faults) -> None:
        """Set the offset from true time (a jump of the difference from the last one)."""
        # libfaketime's relative form: "+7200" or "-7200" seconds from the real clock.
        self.path.write_text(f"{seconds:+.0f}\n")
        faults.note(f"clock of {self.path.stem} at {seconds:+.0f} s")


def faketime_env(env: dict[str, str], clock: ClockFile) -> dict[str, str]:
    """``env`` with libfaketime preloaded, reading ``clock`` on every call.

    Only the wall clock moves, as when an operator or a broken NTP sets the time: the
    monotonic clock (timeouts, sleeps, the lease renewal interval) runs on, as on a host.
    """
    if not clock.path.exists():
        clock.path.write_text("+0\n")
    return env | {
        "LD_PRELOAD": str(libfaketime()),
        "FAKETIME_TIMESTAMP_FILE": str(clock.path),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_DONT_RESET": "1",
    }


# --- A corrupted NATS stream file ----------------------------------------------------------


STREAM_DAMAGE = ("truncate", "scribble", "remove")


def stream_blocks(store_dir: Path, stream: str) -> list[Path]:
    """The message block files of ``stream`` in a JetStream store directory, oldest first."""
    found = (store_dir / "jetstream").glob(f"*/streams/{stream}/msgs/*.blk")
    return sorted(found, key=lambda p: int(p.stem) if p.stem.isdigit() else 0)


def damage_stream(store_dir: Path, stream: str, faults: Faults, *, how: str) -> list[Path]:
    """Damage ``stream``'s files in a stopped server's store directory (``--store_dir``).

    ``how`` is ``truncate`` (each block cut to half its length, as a crash mid-write leaves
    it), ``scribble`` (the middle of each block overwritten with garbage, as a bad disk
    does) or ``remove`` (the stream's whole directory gone, its consumers with it). Returns
    the damaged block files. For a server another process supervises (``amos up``), stop
    it, call this, and let it be started again.
    """
    if how not in STREAM_DAMAGE:
        raise ValueError(f"unknown damage {how!r}: one of {', '.join(STREAM_DAMAGE)}")
    blocks = stream_blocks(store_dir, stream)
    if not blocks:
        raise AssertionError(f"stream {stream} has no block file under {store_dir}")
    if how == "remove":
        shutil.rmtree(blocks[0].parent.parent)
        faults.note(f"remove the directory of stream {stream}")
        return blocks
    for block in blocks:
        size = block.stat().st_size
        if how == "truncate":
            os.truncate(block, size // 2)
        else:
            with block.open("r+b") as out:
                out.seek(size // 4)
                out.write(b"\xa5" * max(1, size // 2))
        faults.note(f"{how} {block.name} of stream {stream} ({size} bytes)")
    return blocks


def corrupt_stream(
    nats: EmbeddedNats,
    stream: str,
    faults: Faults,
    *,
    how: str,
    while_down: Callable[[], None] | None = None,
) -> list[Path]:
    """Stop NATS, ``damage_stream`` its store, start NATS on the same port and store.

    ``while_down`` runs while the server is stopped. Returns the damaged files.
    """
    if how not in STREAM_DAMAGE:
        raise ValueError(f"unknown damage {how!r}: one of {', '.join(STREAM_DAMAGE)}")
    port = nats.port
    faults.note(f"stop NATS (port {port})")
    nats.stop()
    if while_down is not None:
        while_down()
    blocks = damage_stream(nats.home / "nats", stream, faults, how=how)
    nats.port = port
    nats.start()
    faults.note(f"start NATS (port {port})")
    return blocks


# --- The database restarting ---------------------------------------------------------------


def restart_postgres(
    server: PostgresServer, faults: Faults, *, while_down: Callable[[], None] | None = None
) -> None:
    """Restart PostgreSQL: fast shutdown (open transactions abort), then start again.

    ``while_down`` runs while the server is stopped, for a test that acts during the outage.
    """
    faults.note(f"stop PostgreSQL (port {server.port})")
    server.halt()
    try:
        if while_down is not None:
            while_down()
    finally:
        server.resume()
        faults.note(f"start PostgreSQL (port {server.port})")
