"""AMOS_HOME is the node's alone: nothing in it is open to other OS users (decision 0049).

The database (and its -wal and -shm), logs, artifacts, keys and the catalog all live there,
so the node's processes run with umask 077 and ``secure_home`` takes group and other
permissions off whatever an older install or another tool left behind. When `amos up` runs
as root, ``share_home`` gives the home to the service user that runs the API, the worker and
the runner, keeping root's own entries root's: the home becomes root-owned, group-writable
by the service user's own group and sticky, so the service user can create and delete its
own files there but can neither read the checkpoint key nor rename root's entries away.

Root walks a tree the service user can write to, possibly while one of its processes runs,
so every walk here goes through directory descriptors and never follows a link: a directory
swapped for a link to ``/etc`` half-way through is skipped, not entered.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

    from amosflow.config import AuditSettings
    from amosflow.node._service_user import ServiceUser

#: The umask of every node process: new files 0600, new directories 0700.
PRIVATE_UMASK = 0o077
#: AMOS_HOME under a root node: root's, the service user's group may enter and add files,
#: and the sticky bit keeps it from renaming or deleting what it does not own.
SHARED_HOME_MODE = 0o1770
#: Root's directories the service user may read (the audit directory, the logs): 0750.
SHARED_DIR_MODE = 0o750
#: Root's files the service user may read (the public key, the sink, the API's log config).
SHARED_FILE_MODE = 0o640
#: Entries of a root node's home that stay root's: what root processes write by name.
ROOT_ENTRIES = frozenset(
    {"logs", "node.json", "temporal.json", "temporal.log", "nats.json", "nats.log", "nats"}
)
_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def private_umask() -> None:
    """Make every file this process creates from now on 0600 and every directory 0700."""
    os.umask(PRIVATE_UMASK)


def _each(top: Path, act: Callable[[int, str], None], skip: frozenset[str] = frozenset()) -> None:
    """Call ``act(dir_fd, name)`` for every entry under ``top`` (not ``top`` itself).

    Top-level entries named in ``skip`` are left out with all they hold. Links are acted on
    as links, never followed, and a directory replaced while the walk runs is not entered.
    """
    for directory, dirs, files, fd in os.fwalk(top, follow_symlinks=False):
        if directory == str(top):
            dirs[:] = [name for name in dirs if name not in skip]
            files = [name for name in files if name not in skip]  # noqa: PLW2901
        for name in [*dirs, *files]:
            with contextlib.suppress(FileNotFoundError):
                act(fd, name)


def _strip(dir_fd: int, name: str) -> None:
    """Take group and other permissions off one entry, opened without following a link."""
    try:
        fd = os.open(name, _NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in {errno.ELOOP, errno.ENXIO, errno.EACCES, errno.EPERM}:
            return  # a link, a socket, or not ours to change
        raise
    try:
        info = os.fstat(fd)
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077 and os.geteuid() in {0, info.st_uid}:
            os.fchmod(fd, mode & ~0o077)
    finally:
        os.close(fd)


def secure_home(home: Path) -> None:
    """Create AMOS_HOME 0700 and take group and other permissions off everything in it.

    Entries another user owns are left alone unless this process is root; links are never
    followed. Called on every start, so an older install is repaired.
    """
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    home.chmod(stat.S_IMODE(home.stat().st_mode) & ~0o077)
    _each(home, _strip)


def hand_over(home: Path, user: ServiceUser, skip: Iterable[str]) -> None:
    """Give everything under ``home`` to the service user but the top-level entries ``skip``."""

    def give(dir_fd: int, name: str) -> None:
        os.chown(name, user.uid, user.gid, dir_fd=dir_fd, follow_symlinks=False)

    _each(home, give, frozenset(skip))


def _share(path: Path, gid: int, mode: int) -> None:
    """Make a root entry ``mode`` with group ``gid``, refusing one that is not root's own."""
    fd = os.open(path, _NOFOLLOW)
    try:
        if os.fstat(fd).st_uid != 0:
            raise RuntimeError(f"{path} should be root's: move it away and start again")
        os.fchown(fd, 0, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _take_back(path: Path, *, directory: bool) -> bool:
    """Remove what is at ``path`` unless it is root's own file (or directory); say if it was."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    kind = stat.S_ISDIR if directory else stat.S_ISREG
    if kind(info.st_mode) and info.st_uid == 0:
        return True
    if stat.S_ISDIR(info.st_mode):
        path.rename(path.with_name(f"{path.name}.not-root.{os.getpid()}"))
    else:
        path.unlink()
    return False


def claim(path: Path) -> None:
    """Make ``path`` a file of root's that a root process may then write by name.

    In the shared home the service user may create any name root has not taken; whatever it
    put at ``path`` (a link to ``/etc/passwd``, say) is removed first, which root may do in
    its own sticky directory.
    """
    if not _take_back(path, directory=False):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))


def claim_dir(path: Path) -> None:
    """Make ``path`` a directory of root's (0700), moving aside anything else found there."""
    if not _take_back(path, directory=True):
        path.mkdir(mode=0o700)


def share_home(home: Path, user: ServiceUser, settings: AuditSettings) -> None:
    """Lay AMOS_HOME out for a root node whose API, worker and runner run as ``user``.

    Call before any of the service user's processes start. The home becomes root's (mode
    1770, group ``user``); root keeps its own entries (the logs, the embedded servers'
    state) and the audit directory: the checkpoint key 0600, the public key and the sink
    0640 for ``user``'s group to read. Everything else becomes ``user``'s, the fingerprint
    key (the API's own) included.
    """
    os.chown(home, 0, user.gid)
    home.chmod(SHARED_HOME_MODE)
    audit_dir = settings.directory.absolute()
    kept = set(ROOT_ENTRIES)
    if audit_dir.parent == home.absolute():
        kept.add(audit_dir.name)
    _move_legacy_cursor(settings)
    hand_over(home, user, kept)
    logs = home / "logs"
    claim_dir(logs)
    _share(logs, user.gid, SHARED_DIR_MODE)
    audit_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _share(audit_dir, user.gid, SHARED_DIR_MODE)
    from amosflow import audit  # noqa: PLC0415 - the supervisor never needs the audit package

    audit.CheckpointSigner.from_file(settings.key_path)  # created here, root's, 0600
    if not settings.sink_path.exists():
        os.close(os.open(settings.sink_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for public in (settings.public_key_path, settings.sink_path):
        _share(public, user.gid, SHARED_FILE_MODE)
    audit.load_fingerprint_key(settings.fingerprint_key_path)
    os.chown(settings.fingerprint_key_path, user.uid, user.gid, follow_symlinks=False)


def _move_legacy_cursor(settings: AuditSettings) -> None:
    """Move the SIEM cursor out of the audit directory, where the shipper may now not write."""
    legacy = settings.directory / "siem.cursor"
    if settings.audit_siem_cursor is None and legacy.exists():
        target = settings.home / "siem.cursor"
        if not target.exists():
            legacy.rename(target)
