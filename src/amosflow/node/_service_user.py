"""The unprivileged OS user a root node runs its API, worker and runner as (decision 0049).

A node started as root keeps root for the supervisor, the audit checkpointer and the SIEM
shipper only. Everything that handles requests or runs flows becomes the service user in the
forked child, before it executes anything: ``Demotion`` is the ``preexec_fn`` that does it.

``call_as`` runs a function in a forked child that does the same, for the work `amos up`
itself does in AMOS_HOME (the store, the node's own token): root never opens the service
user's files, which that user could have replaced with links to files of root's.
``drop_privileges`` is for a process that needs root only to start: the checkpointer reads
the key and opens the sink as root, then becomes the service user for everything else.

The service user must reach the interpreter, the installed packages and AMOS_HOME. Where a
directory above one of them shuts it out (an interpreter under ``/root``, a home under a
0700 temporary directory), the child first gets a private mount namespace in which that
directory is an empty tmpfs holding bind mounts of exactly the paths it needs, and nothing
else of what lies there. The host's view is untouched.
"""

from __future__ import annotations

import ctypes
import grp
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE = 1, 4
# Resolved in the parent: between fork and exec the child only makes plain calls.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_NOLOGIN = "/usr/sbin/nologin"


@dataclass(frozen=True, slots=True)
class ServiceUser:
    """An OS account: its name, uid and primary group."""

    name: str
    uid: int
    gid: int


def ensure_service_user(name: str) -> ServiceUser:
    """Look up the system user ``name``, creating it (no login, no home) when it is missing.

    Raises RuntimeError when it cannot be created or is root.
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        shell = _NOLOGIN if Path(_NOLOGIN).exists() else "/bin/false"
        try:  # a group of that name already: join it rather than fail
            group = ["--gid", str(grp.getgrnam(name).gr_gid)]
        except KeyError:
            group = ["--user-group"]
        created = subprocess.run(  # noqa: S603 - a fixed program and a configured name
            [useradd, "--system", *group, "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", shell, "--comment", "AMOS FLOW node", name],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        try:  # another node may have created it first
            entry = pwd.getpwnam(name)
        except KeyError:
            msg = f"cannot create the service user {name!r}: {created.stderr.strip()}"
            raise RuntimeError(msg) from None
    if entry.pw_uid == 0:
        raise RuntimeError(f"the service user {name!r} is root; name an unprivileged one")
    return ServiceUser(name, entry.pw_uid, entry.pw_gid)


def _searchable(info: os.stat_result, user: ServiceUser) -> bool:
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == user.uid:
        return bool(mode & stat.S_IXUSR)
    if info.st_gid == user.gid:
        return bool(mode & stat.S_IXGRP)
    return bool(mode & stat.S_IXOTH)


def _blocker(path: Path, user: ServiceUser) -> Path | None:
    """The topmost directory above ``path`` that ``user`` may not search, or None."""
    for ancestor in reversed(path.parents):
        if not _searchable(ancestor.stat(), user):
            return ancestor
    return None


def covers(paths: Iterable[Path], user: ServiceUser) -> dict[Path, list[Path]]:
    """The directories to hide behind a tmpfs, each with the paths under it to bind back."""
    wanted: set[Path] = set()
    for path in paths:
        if path.exists():
            wanted |= {path.absolute(), path.resolve()}
    found: dict[Path, set[Path]] = {}
    for path in wanted:
        blocker = _blocker(path, user)
        if blocker is not None:
            found.setdefault(blocker, set()).add(path)
    # A path under another revealed path comes with it.
    return {
        blocker: sorted(p for p in inner if not any(q in p.parents for q in inner))
        for blocker, inner in found.items()
    }


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str, target: Path, fstype: str | None, flags: int, data: str | None) -> None:
    assert _LIBC is not None
    _check(
        _LIBC.mount(
            source.encode(),
            str(target).encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _reveal(cover: Path, inner: list[Path]) -> None:
    """Hide ``cover`` behind an empty tmpfs, then bind each of ``inner`` back in place."""
    handles = [os.open(path, os.O_PATH) for path in inner]  # before the tmpfs hides them
    _mount("tmpfs", cover, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=1m")
    for path, handle in zip(inner, handles, strict=True):
        for directory in [*reversed(path.parents)][len(cover.parts) :]:
            directory.mkdir(exist_ok=True)
            directory.chmod(0o755)
        if path.is_dir() or stat.S_ISDIR(os.fstat(handle).st_mode):
            path.mkdir(exist_ok=True)
            path.chmod(0o755)
        else:
            path.touch()
        _mount(f"/proc/self/fd/{handle}", path, None, _MS_BIND | _MS_REC, None)
        os.close(handle)


def drop_privileges(user: ServiceUser) -> None:
    """Become ``user`` for good, keeping no supplementary group, and stay non-dumpable.

    A non-dumpable process cannot be traced nor its memory read by ``user``'s other
    processes, so what it loaded as root (the checkpoint key) stays its own.
    """
    os.setgroups([])
    os.setgid(user.gid)
    os.setuid(user.uid)
    os.umask(0o077)
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
        # Changing credentials cleared the parent-death signal; set it again.
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class Demotion:
    """A ``preexec_fn``: give the child its view of the file system, then become ``user``.

    The mounts need root, so they happen before the switch. With ``switch`` false the child
    keeps root, with the service user's view of the files, to drop privileges itself later.
    """

    user: ServiceUser
    reveal: dict[Path, list[Path]] = field(default_factory=dict)
    switch: bool = True

    def __call__(self) -> None:
        """Run in the forked child just before it executes the program."""
        try:
            if self.reveal:
                assert _LIBC is not None
                _check(_LIBC.unshare(_CLONE_NEWNS), "unshare")
                _mount("none", Path("/"), None, _MS_REC | _MS_PRIVATE, None)
                for cover, inner in self.reveal.items():
                    _reveal(cover, inner)
            if self.switch:
                drop_privileges(self.user)
            elif _LIBC is not None:
                _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except BaseException as exc:
            # Popen reports only that preexec_fn failed; say what, into the child's log.
            os.write(2, f"amos: cannot start as {self.user.name}: {exc}\n".encode())
            raise


def call_as(demotion: Demotion | None, work: Callable[[], object]) -> object:
    """Run ``work`` in a forked child that ``demotion`` made the service user; return its result.

    With no ``demotion`` the child stays this user: what ``work`` imports and allocates then
    dies with the child instead of staying in a long-lived caller (the supervisor).
    The result travels back as JSON. Raises RuntimeError with the child's error when it fails.
    Call it while this process runs no other threads (fork copies only the caller's).
    """
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            os.close(reader)
            if demotion is not None:
                demotion()
            answer = {"result": work()}
            code = 0
        except BaseException as exc:  # everything goes back to the parent
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        with os.fdopen(writer, "w") as out:
            out.write(json.dumps(answer, default=str))
        os._exit(code)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    try:
        answer = json.loads(text)
    except ValueError:
        answer = {"error": f"the child died without an answer: {text[:200]!r}"}
    if "error" in answer:
        where = "in a child" if demotion is None else f"as {demotion.user.name}"
        raise RuntimeError(f"{where}: {answer['error']}")
    return answer["result"]


def needed_paths(home: Path, extra: Iterable[Path] = ()) -> list[Path]:
    """What a service process must reach: AMOS_HOME, the interpreter and its packages."""
    python = Path(sys.executable)
    paths = [home, python.parent, python.resolve().parent, Path(sys.prefix)]
    paths += [Path(sys.base_prefix), Path(sys.exec_prefix), *map(Path, sys.path)]
    paths += [p.parent if p.is_file() else p for p in map(Path, extra)]
    return [p for p in dict.fromkeys(paths) if str(p) and p.exists()]
