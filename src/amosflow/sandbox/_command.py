"""A long-lived program in a fresh sandbox, for a caller that starts it with pipes itself.

An MCP server over stdio is such a program: the MCP SDK starts a command and talks to it
on its standard input and output for as long as a step needs its tools. ``sandboxed_command``
prepares the sandbox (a private job directory, the mounts, gVisor's bundle) and gives back
the command line that runs the program inside it; the caller starts that command, and the
job directory is deleted when the block ends.

The program sees the sandbox's world (``_world``): ``/usr``, the paths it is given
(read-only or writable, each at its own path), a fresh writable ``/scratch`` as ``HOME``
and working directory, and no network but its own loopback.

With ``proxy``, its one way out is an HTTP proxy: a small bridge inside the sandbox listens
on the sandbox's own ``127.0.0.1:3128`` (``HTTP_PROXY`` and ``HTTPS_PROXY`` point there)
and carries each connection over a Unix socket in the job directory to the host, where the
caller serves the proxy and decides where each connection may go. The network namespace is
never shared with the host.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from amosflow.config import EngineSettings
from amosflow.sandbox._world import (
    _BINARIES,
    SANDBOX_GID,
    SANDBOX_UID,
    SCRATCH,
    Backend,
    Job,
    Mount,
    SandboxError,
    SandboxUnavailableError,
    as_root,
    backend_binary,
    bwrap_argv,
    gvisor_argv,
    reachable_by_sandbox,
    system_layout,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
ERROR_TAIL_BYTES = 8192
SYSTEM_PYTHON = Path("/usr/bin/python3")
PROXY_DIR = "/amos/net"
PROXY_SOCKET = "proxy.sock"
PROXY_PORT = 3128
PROXY_URL = f"http://127.0.0.1:{PROXY_PORT}"
# Inside the sandbox, in front of the program: listen on the sandbox's loopback, relay each
# connection to the host's proxy socket, and end with the program's exit status. Keep it
# compatible with any Python 3.8+, since the interpreter may be the system's.
BRIDGE = r"""
import os, select, signal, socket, sys, threading

SOCKET, PORT, PROGRAM = sys.argv[1], int(sys.argv[2]), sys.argv[3:]


def _relay(client):
    upstream = socket.socket(socket.AF_UNIX)
    try:
        upstream.connect(SOCKET)
        peers = {client: upstream, upstream: client}
        while peers:
            ready, _, _ = select.select(list(peers), [], [])
            for sock in ready:
                data = sock.recv(65536)
                if data:
                    peers[sock].sendall(data)
                else:
                    peers.pop(sock).shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        client.close()
        upstream.close()


def _serve(listener):
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_relay, args=(client,), daemon=True).start()


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", PORT))
listener.listen(64)
child = os.fork()
if child == 0:
    listener.close()
    try:
        os.execvp(PROGRAM[0], PROGRAM)
    except OSError as exc:
        sys.stderr.write("cannot start %s: %s\n" % (PROGRAM[0], exc.strerror))
        os._exit(127)
quiet = os.open(os.devnull, os.O_RDWR)
os.dup2(quiet, 0)
os.dup2(quiet, 1)
for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(number, lambda signum, frame: os.kill(child, signum))
threading.Thread(target=_serve, args=(listener,), daemon=True).start()
_, status = os.waitpid(child, 0)
os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
"""
# Started by a root worker, bubblewrap must run as the sandbox user (its user namespace then
# maps to nobody, not to host root). The caller starts the command itself, so the command
# drops its privileges first: the worker's own interpreter, isolated, then exec.
_DROP_PRIVILEGES = (
    "import os, sys\n"
    "os.setgroups([])\n"
    "os.setgid(int(sys.argv[1]))\n"
    "os.setuid(int(sys.argv[2]))\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


class ProgramNotFoundError(SandboxError):
    """The program to run does not exist inside the sandbox (or is not executable there)."""

    code = "amos.sandbox.program_not_found"

    def __init__(self, program: str) -> None:
        self.program = program
        super().__init__(f"command {program!r} is not found inside the sandbox")


@dataclass(frozen=True)
class SandboxedCommand:
    """The command line to start, its environment, and where its error output goes."""

    argv: list[str]
    env: dict[str, str]
    backend: Backend
    stderr: Path
    proxy_socket: Path | None
    _job: Job

    def last_error(self) -> str:
        """The last line the program (or the backend) wrote to stderr, without host paths."""
        try:
            with self.stderr.open("rb") as handle:
                handle.seek(max(0, self.stderr.stat().st_size - ERROR_TAIL_BYTES))
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return ""
        lines = [line.strip() for line in self._job.scrub(text).splitlines() if line.strip()]
        return lines[-1][:500] if lines else ""


def _worker_python(backend: Backend) -> list[Path]:
    """The worker's own Python install and virtual environment (outside /usr), where reachable.

    Bubblewrap started by root runs as the sandbox user, which may not reach them (an
    install under ``/root``): those are left out, and a program that needs them is then
    not found inside the sandbox.
    """
    found: list[Path] = []
    for prefix in dict.fromkeys((sys.base_prefix, sys.prefix)):
        path = Path(prefix).resolve()
        if path.is_relative_to("/usr"):
            continue
        if backend == "bubblewrap" and not reachable_by_sandbox(path):
            continue
        found.append(path)
    return found


def _refuse_home(paths: Sequence[Path]) -> None:
    """No sandbox sees AMOS_HOME: not the home, not a path inside it, not one holding it."""
    home = EngineSettings().home.resolve()
    for path in paths:
        resolved = path.resolve()
        if resolved == home or resolved.is_relative_to(home) or home.is_relative_to(resolved):
            raise SandboxError(f"{path} would show AMOS_HOME inside the sandbox")


def _exposed(mounts: Sequence[Mount]) -> list[Path]:
    """The host paths the sandbox sees at the same path."""
    _, binds = system_layout()
    roots = [Path(path) for path in binds]
    roots += [mount.source for mount in mounts if str(mount.source) == mount.target]
    return [root.resolve() for root in roots]


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _find_program(program: str, search_path: str, mounts: Sequence[Mount]) -> None:
    """Raise ProgramNotFoundError unless ``program`` resolves to an executable the sandbox sees.

    Mounts keep their host paths, so the host's view of an exposed path is the sandbox's.
    """
    roots = _exposed(mounts)
    if "/" in program:
        candidates = [Path(program)] if program.startswith("/") else []
    else:
        candidates = [Path(folder) / program for folder in search_path.split(":") if folder]
    for candidate in candidates:
        resolved = candidate.resolve()
        if (
            _inside(candidate.parent.resolve(), roots)
            and _inside(resolved, roots)
            and resolved.is_file()
            and os.access(resolved, os.X_OK)
        ):
            return
    raise ProgramNotFoundError(program)


@contextlib.contextmanager
def sandboxed_command(
    program: Sequence[str],
    *,
    backend: Backend,
    env: Mapping[str, str] | None = None,
    read_only: Sequence[Path] = (),
    writable: Sequence[Path] = (),
    worker_python: bool = False,
    proxy: bool = False,
) -> Iterator[SandboxedCommand]:
    """Prepare a sandbox for ``program`` and yield the command that runs it there.

    ``read_only`` and ``writable`` are host paths the program sees at the same path, and
    with ``worker_python`` the worker's own Python install and virtual environment too
    (read-only), so a Python program can use the packages installed with the platform.
    The environment is ``PATH``, ``LANG`` and ``HOME=/scratch``, then ``env``. With
    ``proxy``, the caller must serve an HTTP proxy on ``proxy_socket`` before it starts the
    command: the program's only way out (see the module).

    Raises:
        SandboxUnavailableError: the backend's program is missing (or gVisor without root).
        ProgramNotFoundError: ``program[0]`` does not exist inside the sandbox.
        SandboxError: a path cannot be made visible to the sandbox user.
    """
    binary = backend_binary(backend)
    if binary is None:
        raise SandboxUnavailableError(f"{_BINARIES[backend]} is not installed")
    if backend == "gvisor" and not as_root():
        raise SandboxUnavailableError("gVisor's runsc needs a worker running as root")
    inner = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8", "HOME": SCRATCH, **(env or {})}
    shown = [*read_only, *(_worker_python(backend) if worker_python else [])]
    _refuse_home([*shown, *writable])
    mounts = [Mount(path, str(path)) for path in shown]
    mounts += [Mount(path, str(path), writable=True) for path in writable]
    for mount in mounts:
        if backend == "bubblewrap" and not reachable_by_sandbox(mount.source):
            raise SandboxError(f"the sandbox user cannot reach {mount.source}")
    _find_program(program[0], inner["PATH"], mounts)
    if proxy:
        bridge = _bridge_python(mounts)
        names = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
        inner |= dict.fromkeys(names, PROXY_URL) | dict.fromkeys(("NO_PROXY", "no_proxy"), "")
        socket = f"{PROXY_DIR}/{PROXY_SOCKET}"
        program = [bridge, "-I", "-S", "-c", BRIDGE, socket, str(PROXY_PORT), *program]
    job = Job.create(backend)
    try:
        scratch = job.directory("scratch", sandbox=True)
        stderr = job.file(job.root / "stderr", b"", sandbox=False)
        mounts.append(Mount(scratch, SCRATCH, writable=True))
        proxy_socket = None
        if proxy:
            net = job.directory("net", sandbox=True)
            mounts.append(Mount(net, PROXY_DIR))
            proxy_socket = net / PROXY_SOCKET
        if backend == "gvisor":
            argv = gvisor_argv(binary, job, mounts, program, inner, cwd=SCRATCH, host_sockets=proxy)
        else:
            argv = bwrap_argv(binary, mounts, program, inner, cwd=SCRATCH)
            if as_root():
                drop = [sys.executable, "-I", "-S", "-c", _DROP_PRIVILEGES]
                argv = [*drop, str(SANDBOX_GID), str(SANDBOX_UID), *argv]
        env = {"PATH": "/usr/bin:/bin"}
        yield SandboxedCommand(argv, env, backend, stderr, proxy_socket, job)
    finally:
        job.remove()


def _bridge_python(mounts: Sequence[Mount]) -> str:
    """The interpreter that runs the network bridge inside the sandbox."""
    for python in (str(SYSTEM_PYTHON), sys.executable):
        try:
            _find_program(python, DEFAULT_PATH, mounts)
        except ProgramNotFoundError:
            continue
        return python
    raise SandboxError("no Python inside the sandbox to carry the program's network traffic")
