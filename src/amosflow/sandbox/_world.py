"""What every sandbox shares: the backends, the world a sandboxed process sees, its job directory.

The world (docs/decisions/0025-code-sandbox.md, 0045-sandboxed-mcp-servers.md) is a
read-only root made of ``/usr`` (and the ``/bin``, ``/lib*`` links), ``/proc``, ``/dev``, a
small ``/tmp`` tmpfs and the mounts its caller asks for; no network but its own loopback;
an unprivileged user (uid 65534 when the worker runs as root, else the worker's own uid
inside a user namespace) with no capabilities, and only the environment it is given.

A job directory holds what one sandbox needs on the host (a script, a result, a scratch
directory, gVisor's bundle and state). It is made 0700, its files 0600, and what the
sandboxed process must read or write belongs to the sandbox user: nobody else on the host
can read it, and it is deleted afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from amosflow.config import EngineSettings
from amosflow.errors import AmosError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

Backend = Literal["gvisor", "bubblewrap"]
BACKENDS: tuple[Backend, ...] = ("gvisor", "bubblewrap")
SANDBOX_ENV = "AMOS_SANDBOX"
SANDBOX_UID = 65534  # nobody
SANDBOX_GID = 65534  # nogroup
MIB = 1024 * 1024
TMP_TMPFS_MB = 64
TMP = "/tmp"  # noqa: S108 - the sandbox's own small tmpfs, not the host's /tmp
SCRATCH = "/scratch"
_ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_BINARIES: dict[Backend, str] = {"gvisor": "runsc", "bubblewrap": "bwrap"}
# gVisor's ptrace platform needs neither KVM nor a recent runsc; it works in containers.
RUNSC_FLAGS = ("--network=none", "--platform=ptrace")


class SandboxUnavailableError(AmosError):
    """No sandbox backend works on this machine (or the one asked for does not)."""

    code = "amos.sandbox.unavailable"


class SandboxError(AmosError):
    """The sandbox itself failed (not what ran in it): it did not start or it broke.

    ``detail`` is the backend's last line of complaint, host paths replaced, for operators.
    """

    code = "amos.sandbox"

    def __init__(self, message: str, detail: str = "") -> None:
        self.detail = detail
        super().__init__(message)


def backend_binary(backend: Backend) -> str | None:
    """The path of the backend's program (``runsc`` or ``bwrap``), or None if absent."""
    name = _BINARIES[backend]
    found = shutil.which(name)
    if found is None:
        for folder in ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"):
            candidate = Path(folder) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return found


def as_root() -> bool:
    """Whether the worker runs as root, so the sandbox must run as uid 65534 instead."""
    return os.geteuid() == 0


@dataclass(frozen=True, slots=True)
class Mount:
    """A host path the sandboxed process sees at ``target``, read-only unless ``writable``."""

    source: Path
    target: str
    writable: bool = False


def system_layout() -> tuple[list[tuple[str, str]], list[str]]:
    """The host's ``/bin``-style links as (target, path) and the system directories to mount."""
    links: list[tuple[str, str]] = []
    binds = ["/usr"]
    for name in _ROOT_LINKS:
        path = Path("/") / name
        if path.is_symlink():
            links.append((str(path.readlink()), str(path)))
        elif path.is_dir():
            binds.append(str(path))
    return links, binds


def reachable_by_sandbox(path: Path) -> bool:
    """Whether the sandbox user can reach ``path`` by name (bubblewrap run as uid 65534 must)."""
    if not as_root():
        return True
    try:
        resolved = path.resolve(strict=True)
    except OSError:
        return False
    for folder in (*reversed(resolved.parents), resolved):
        info = folder.stat()
        if not stat.S_ISDIR(info.st_mode):
            continue
        if info.st_uid == SANDBOX_UID:
            needed = stat.S_IXUSR
        elif info.st_gid == SANDBOX_GID:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not info.st_mode & needed:
            return False
    return True


def _private_base(backend: Backend) -> str | None:
    """Where job directories are made: ``AMOS_HOME/sandbox`` when a home is configured.

    Without one (or for bubblewrap started by root, which runs as the sandbox user and must
    reach the job by path, while the home is closed to that user) the system's temp dir;
    each job directory is private there too.
    """
    settings = EngineSettings()
    if "home" not in settings.model_fields_set or (backend == "bubblewrap" and as_root()):
        return None
    if not settings.home.is_dir():
        return None
    base = settings.home / "sandbox"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700)
    info = base.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise SandboxError(f"{base} is not a directory of the worker's own")
    base.chmod(0o700)
    return str(base)


@dataclass(frozen=True)
class Job:
    """The host directory of one sandbox: 0700, deleted afterwards."""

    root: Path
    backend: Backend

    @property
    def bundle(self) -> Path:
        """The OCI bundle of gVisor (config.json and the rootfs of mount points)."""
        return self.root / "bundle"

    @property
    def state(self) -> Path:
        """The state directory of gVisor (``runsc --root``)."""
        return self.root / "state"

    @classmethod
    def create(cls, backend: Backend) -> Job:
        """A fresh private job directory for ``backend``."""
        root = Path(tempfile.mkdtemp(prefix="amos-sandbox-", dir=_private_base(backend)))
        root.chmod(0o700)
        if backend == "bubblewrap" and as_root():
            os.chown(root, SANDBOX_UID, SANDBOX_GID)  # bwrap runs as it and mounts by path
        return cls(root, backend)

    def directory(self, name: str, *, sandbox: bool) -> Path:
        """A new 0700 subdirectory; the sandbox user's when ``sandbox`` (it reads or writes it)."""
        path = self.root / name
        path.mkdir(mode=0o700)
        path.chmod(0o700)
        if sandbox and as_root():
            os.chown(path, SANDBOX_UID, SANDBOX_GID)
        return path

    def file(self, path: Path, data: bytes, *, sandbox: bool) -> Path:
        """Write a new 0600 file; the sandbox user's when ``sandbox``."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if sandbox and as_root():
                os.fchown(handle.fileno(), SANDBOX_UID, SANDBOX_GID)
        return path

    def remove(self) -> None:
        """Delete the job directory and everything in it."""
        shutil.rmtree(self.root, ignore_errors=True)

    def scrub(self, text: str) -> str:
        """``text`` with the job's host path replaced (messages carry no host paths)."""
        return text.replace(str(self.root), "<job>")


def _ordered(mounts: Sequence[Mount]) -> list[Mount]:
    """Mounts parents first, so a nested mount lands on top of its parent."""
    return sorted(mounts, key=lambda m: (m.target.count("/"), m.target))


@functools.cache
def _bwrap_supports(binary: str, option: str) -> bool:
    """Whether this bubblewrap knows ``option`` (``--disable-userns`` came in 0.8)."""
    try:
        shown = subprocess.run(  # noqa: S603 - a fixed argv
            [binary, "--help"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return option.encode() in shown.stdout + shown.stderr


def bwrap_argv(
    binary: str,
    mounts: Sequence[Mount],
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: str,
) -> list[str]:
    """The bubblewrap command line that runs ``argv`` in the sandbox's world."""
    links, binds = system_layout()
    line = [binary, "--unshare-all", "--unshare-user", "--unshare-net"]
    if _bwrap_supports(binary, "--disable-userns"):  # no nested user namespaces
        line.append("--disable-userns")
    line += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "sandbox"]
    for path in binds:
        line += ["--ro-bind", path, path]
    for target, path in links:
        line += ["--symlink", target, path]
    line += ["--proc", "/proc", "--dev", "/dev"]
    line += ["--size", str(TMP_TMPFS_MB * MIB), "--tmpfs", TMP]
    for mount in _ordered(mounts):
        line += ["--bind" if mount.writable else "--ro-bind", str(mount.source), mount.target]
    line.append("--clearenv")
    for key, value in env.items():
        line += ["--setenv", key, value]
    line += ["--chdir", cwd, "--remount-ro", "/", "--", *argv]
    return line


def _skeleton_dir(rootfs: Path, path: Path) -> None:
    """Make ``path`` and its missing parents under ``rootfs``, 0700 and the sandbox user's.

    They are the sandbox's root directory and its mount points: the sandbox user walks and
    lists them, nobody else needs to.
    """
    missing = [path, *(p for p in path.parents if p.is_relative_to(rootfs))]
    for folder in reversed(missing):
        if not folder.exists():
            folder.mkdir(mode=0o700)
            folder.chmod(0o700)
            if as_root():
                os.chown(folder, SANDBOX_UID, SANDBOX_GID)


def _mount_point(rootfs: Path, target: str, *, is_dir: bool) -> None:
    point = rootfs / target.lstrip("/")
    _skeleton_dir(rootfs, point if is_dir else point.parent)
    if not is_dir and not point.exists():
        point.touch(mode=0o600)


def _oci_spec(
    job: Job,
    mounts: Sequence[Mount],
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: str,
) -> dict[str, Any]:
    """The OCI spec of gVisor for ``argv``; also makes the mount points in the bundle."""
    links, binds = system_layout()
    rootfs = job.bundle / "rootfs"
    for target, path in links:
        _skeleton_dir(rootfs, (rootfs / path.lstrip("/")).parent)
        (rootfs / path.lstrip("/")).symlink_to(target)
    for path in (*binds, "/proc", "/dev", TMP):
        _mount_point(rootfs, path, is_dir=True)
    for mount in mounts:
        _mount_point(rootfs, mount.target, is_dir=mount.source.is_dir())
    entries: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]},
        {
            "destination": TMP,
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777", f"size={TMP_TMPFS_MB}m"],
        },
    ]
    entries += [
        {"destination": path, "type": "bind", "source": path, "options": ["rbind", "ro"]}
        for path in binds
    ]
    entries += [
        {
            "destination": mount.target,
            "type": "bind",
            "source": str(mount.source),
            "options": ["rbind", "rw" if mount.writable else "ro", "nosuid", "nodev"],
        }
        for mount in _ordered(mounts)
    ]
    no_caps: list[str] = []
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": SANDBOX_UID, "gid": SANDBOX_GID},
            "args": list(argv),
            "env": [f"{key}={value}" for key, value in env.items()],
            "cwd": cwd,
            "capabilities": {
                "bounding": no_caps,
                "effective": no_caps,
                "inheritable": no_caps,
                "permitted": no_caps,
                "ambient": no_caps,
            },
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "sandbox",
        "mounts": entries,
        "linux": {
            "namespaces": [{"type": kind} for kind in ("pid", "network", "ipc", "uts", "mount")],
        },
    }


def gvisor_argv(
    binary: str,
    job: Job,
    mounts: Sequence[Mount],
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: str,
    host_sockets: bool = False,
) -> list[str]:
    """The ``runsc run`` command line for ``argv``, its bundle and state in the job directory.

    ``host_sockets`` lets the sandbox connect to host Unix sockets in its mounts (the only
    way out of ``--network=none``; see ``_command``'s egress proxy).
    """
    job.directory("bundle", sandbox=False)
    job.directory("state", sandbox=False)
    spec = _oci_spec(job, mounts, argv, env, cwd=cwd)
    job.file(job.bundle / "config.json", json.dumps(spec).encode(), sandbox=False)
    container = "amos-" + secrets.token_hex(8)
    flags = [*RUNSC_FLAGS, *(["--host-uds=open"] if host_sockets else [])]
    return [binary, f"--root={job.state}", *flags, "run", f"--bundle={job.bundle}", container]
