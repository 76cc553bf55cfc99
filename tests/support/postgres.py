"""A throw-away PostgreSQL server for tests, started from the binaries on this machine."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

SERVICE_USER = "amos-pg"
MISSING = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or under "
    "/usr/lib/postgresql/*/bin. The store tests need a real PostgreSQL: run `make deps` "
    "(apt-get install postgresql) and try again."
)


class PostgresUnavailableError(RuntimeError):
    """The machine has no PostgreSQL server binaries, or the server would not start."""


def find_bin_dir(path: str | None = None, debian_root: Path = Path("/usr/lib/postgresql")) -> Path:
    """Return the directory holding initdb and pg_ctl: PATH first, then newest Debian version."""
    found = shutil.which("initdb", path=path)
    candidates = [Path(found).resolve().parent] if found else []
    debian = debian_root.glob("*/bin")
    candidates += sorted(
        debian, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True
    )
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    raise PostgresUnavailableError(MISSING)


def _service_user() -> pwd.struct_passwd | None:
    """The unprivileged account to run postgres as when we are root (postgres refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd:
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=False,
            capture_output=True,
        )
        try:
            return pwd.getpwnam(SERVICE_USER)
        except KeyError:
            pass
    return pwd.getpwnam("nobody")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """One postgres cluster in a temporary directory, listening on a loopback port only."""

    bin_dir: Path = field(default_factory=find_bin_dir)
    port: int = field(default_factory=_free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="amos-pg-")))
    _user: pwd.struct_passwd | None = field(default_factory=_service_user)
    _names: itertools.count[int] = field(default_factory=itertools.count)
    #: Off by default: tests need speed, not crash safety. Benchmarks of commit cost turn it on.
    durable: bool = False
    _options: str = ""

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        user = self._user.pw_uid if self._user else None
        group = self._user.pw_gid if self._user else None
        result = subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            user=user,
            group=group,
            extra_groups=[] if user is not None else None,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.root,
        )
        if result.returncode != 0:
            log = self.root / "postgres.log"
            detail = log.read_text() if log.exists() else ""
            raise PostgresUnavailableError(
                f"{args[0]} failed ({result.returncode}): {result.stderr}{result.stdout}{detail}"
            )

    def start(self) -> PostgresServer:
        """Create the cluster (trust auth on loopback, durability off unless asked) and start it."""
        if self._user is not None:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        durability = (
            "-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
            if self.durable
            else "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories='{self.root}' {durability} -c max_connections=200"
        )
        self._options = options
        self.resume()
        return self

    def halt(self) -> None:
        """Stop the server (fast shutdown: open transactions abort, connections drop); keep files."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the created cluster again, on the same port and with the same options."""
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.root / "postgres.log"),
            "-o", self._options, "-w", "-t", "60", "start",
        )  # fmt: skip

    def restart(self) -> None:
        """Stop and start again, as an operator's restart or a crash-and-recover does."""
        self.halt()
        self.resume()

    def create_database(self) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        name = f"amos_t{next(self._names)}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # name is ours, never user input
        return self.admin_url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its files."""
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
