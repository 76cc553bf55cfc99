"""AMOS_HOME is the node's alone: nothing in it is open to other OS users (decision 0049).

The database (and its -wal and -shm), logs, artifacts, keys and the catalog all live there,
so the node's processes run with umask 077 and ``secure_home`` takes group and other
permissions off whatever an older install or another tool left behind. When `amos up` runs
as root, ``hand_over`` gives the home to the service user that runs the API, the worker and
the runner, keeping the audit directory root's: the home becomes root-owned, group-writable
by the service user's own group and sticky, so the service user can create and delete its
own files there but can neither read the checkpoint key nor rename root's entries away.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from amosflow import audit

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from amosflow.node.service_user import ServiceUser

#: The umask of every node process: new files 0600, new directories 0700.
PRIVATE_UMASK = 0o077
#: AMOS_HOME under a root node: root's, the service user's group may enter and add files,
#: and the sticky bit keeps it from renaming or deleting what it does not own.
SHARED_HOME_MODE = 0o1770
#: The audit directory under a root node: the service user may read the public key, the
#: sink and its own fingerprint key in it, never the checkpoint key, and may change nothing.
AUDIT_DIR_MODE = 0o750
#: The public key and the sink under a root node: readable by the service user's group.
AUDIT_PUBLIC_MODE = 0o640


def private_umask() -> None:
    """Make every file this process creates from now on 0600 and every directory 0700."""
    os.umask(PRIVATE_UMASK)


def _walk(top: Path, skip: frozenset[Path] = frozenset()) -> Iterator[Path]:
    """``top`` and everything under it, without following links, leaving out ``skip`` trees."""
    yield top
    if not top.is_dir() or top.is_symlink():
        return
    for directory, dirs, files in os.walk(top, followlinks=False):
        here = Path(directory)
        dirs[:] = [name for name in dirs if here / name not in skip]
        for name in [*dirs, *files]:
            yield here / name


def secure_home(home: Path) -> None:
    """Create AMOS_HOME 0700 and take group and other permissions off what is in it.

    Entries another user owns are left alone unless this process is root; links are never
    followed. Called on every start, so an older install is repaired.
    """
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    me = os.geteuid()
    for path in _walk(home):
        with contextlib.suppress(FileNotFoundError):
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode) or me not in {0, info.st_uid}:
                continue
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                path.chmod(mode & ~0o077)


def hand_over(paths: Iterable[Path], user: ServiceUser, keep: Iterable[Path] = ()) -> None:
    """Give ``paths`` and everything under them to the service user, except the ``keep`` trees."""
    skip = frozenset(keep)
    for top in paths:
        if top in skip or not top.exists():
            continue
        for path in _walk(top, skip):
            with contextlib.suppress(FileNotFoundError):
                os.lchown(path, user.uid, user.gid)


def share_home(home: Path, user: ServiceUser, settings: audit.AuditSettings) -> None:
    """Lay AMOS_HOME out for a root node whose API, worker and runner run as ``user``.

    The home becomes root's (mode 1770, group ``user``), everything in it ``user``'s but the
    audit directory, which stays root's: the checkpoint key 0600, the public key and the sink
    0640 for ``user``'s group to read, the fingerprint key (the API's own) ``user``'s.
    """
    audit_dir = settings.directory.absolute()
    os.chown(home, 0, user.gid)
    home.chmod(SHARED_HOME_MODE)
    hand_over((entry for entry in home.iterdir() if entry != audit_dir), user, keep=[audit_dir])
    audit_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(audit_dir, 0, user.gid)
    audit_dir.chmod(AUDIT_DIR_MODE)
    audit.CheckpointSigner.from_file(settings.key_path)  # created here, root's, 0600
    if not settings.sink_path.exists():
        os.close(os.open(settings.sink_path, os.O_WRONLY | os.O_CREAT, AUDIT_PUBLIC_MODE))
    for public in (settings.public_key_path, settings.sink_path):
        os.chown(public, 0, user.gid)
        public.chmod(AUDIT_PUBLIC_MODE)
    audit.load_fingerprint_key(settings.fingerprint_key_path)
    os.chown(settings.fingerprint_key_path, user.uid, user.gid)
