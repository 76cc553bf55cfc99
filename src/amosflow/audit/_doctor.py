"""Can the API's OS user get at the checkpoint key or the sink? Checked, not assumed (ADR 0049).

Signed checkpoints and statements prove anything only while the processes that write records
can neither read ``checkpoint.key`` nor change the sink or the public key a verifier reads.
``exposure`` answers that for one OS user from the files' owners and modes, walking down from
``AMOS_HOME`` (the API must reach its home, so the directories above it do not protect the
key) and counting a directory the user may rename entries in as one it can swap.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from amosflow.config import AuditSettings


@dataclass(frozen=True, slots=True)
class OsUser:
    """Who a process runs as: its uid and every group it holds."""

    name: str
    uid: int
    gids: frozenset[int]


def os_user(name: str | None = None) -> OsUser:
    """The OS user ``name`` with its groups, or the one this process runs as; KeyError if none."""
    if name is None:
        uid = os.geteuid()
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = f"uid {uid}"
        return OsUser(name, uid, frozenset({os.getegid(), *os.getgroups()}))
    entry = pwd.getpwnam(name)
    members = {group.gr_gid for group in grp.getgrall() if name in group.gr_mem}
    return OsUser(name, entry.pw_uid, frozenset({entry.pw_gid, *members}))


def _may(info: os.stat_result, user: OsUser, bit: int) -> bool:
    """Whether ``user`` has permission ``bit`` (4 read, 2 write, 1 search) on a file."""
    if user.uid == 0:
        return True
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == user.uid:
        return bool(mode & (bit << 6))
    if info.st_gid in user.gids:
        return bool(mode & (bit << 3))
    return bool(mode & bit)


def _may_replace(directory: os.stat_result, entry: os.stat_result, user: OsUser) -> bool:
    """Whether ``user`` may rename or unlink ``entry`` in ``directory`` (and so swap it)."""
    if not (_may(directory, user, 2) and _may(directory, user, 1)):
        return False
    sticky = bool(directory.st_mode & stat.S_ISVTX)
    return not sticky or user.uid in {directory.st_uid, entry.st_uid}


def _ancestry(path: Path, top: Path) -> list[tuple[Path, Path]]:
    """(directory, entry) pairs from ``top`` down to ``path``; outside ``top`` just the last."""
    if top not in path.parents:
        return [(path.parent, path)]
    pairs: list[tuple[Path, Path]] = []
    entry = path
    while entry != top:
        pairs.append((entry.parent, entry))
        entry = entry.parent
    return pairs[::-1]


def _reachable(path: Path, top: Path, user: OsUser) -> bool:
    return all(_may(directory.stat(), user, 1) for directory, _ in _ancestry(path, top))


def _swappable(path: Path, top: Path, user: OsUser) -> Path | None:
    """The first entry between ``top`` and ``path`` that ``user`` may rename away, or None."""
    for directory, entry in _ancestry(path, top):
        if _may_replace(directory.stat(), entry.lstat(), user):
            return entry
    return None


def key_exposure(settings: AuditSettings, user: OsUser) -> list[str]:
    """Every way ``user`` could read the checkpoint key or change what a verifier trusts.

    An empty list means the key, the public key and the sink are out of its reach.
    """
    home = settings.home.absolute()
    problems: list[str] = []
    key = settings.key_path.absolute()
    if key.exists():
        info = key.stat()
        if info.st_uid == user.uid:
            problems.append(f"{user.name} owns {key} (it can read and change it)")
        elif _reachable(key, home, user) and _may(info, user, 4):
            problems.append(f"{user.name} can read {key}")
    for path in (key, settings.public_key_path.absolute(), settings.sink_path.absolute()):
        if not path.exists():
            continue
        if path != key and _may(path.stat(), user, 2) and _reachable(path, home, user):
            problems.append(f"{user.name} can write {path}")
        swapped = _swappable(path, home, user)
        if swapped is not None:
            problems.append(f"{user.name} can rename or replace {swapped}, and so {path}")
    return list(dict.fromkeys(problems))
