"""`file.read`, `file.write` and `file.list`: inside the runner's named roots, nothing else.

Safe by construction (decision 0027):

- The roots come from the process setting ``AMOS_FILE_ROOTS``; none configured refuses
  every call. A flow names a root and a relative path; absolute paths, ``..`` components
  and NUL bytes are refused before anything is opened.
- The path is walked one component at a time from a descriptor of the root's real path,
  each directory opened with ``O_DIRECTORY | O_NOFOLLOW`` relative to its parent and the
  file with ``O_NOFOLLOW``: a symbolic link is never followed, wherever it sits, so no link
  (even one created while the action runs) can lead outside the root. The opened object's
  real path is checked to lie inside the root's real path as well.
- Only regular files are read (no FIFOs or devices). Writes go to a temporary file in the
  target's directory, are synced, and are renamed into place; without ``overwrite`` the
  rename is a hard link that fails when the name exists, so an existing file is never
  replaced, even by a racing writer.
- A written file is ``0600`` (or the action's ``mode``) from the moment it exists, and a
  directory made for it ``0700`` (plus read and search where ``mode`` grants read), so
  nothing a flow writes is readable by other users unless the flow says so.
- A refusal is ``FileAccessDenied`` (not retryable) and names the root and the relative
  path only, never a host path.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import fnmatch
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amosflow.config import FileSettings
from amosflow.dsl import actions as spec
from amosflow.engine.activities._base import ActionContext, implementation
from amosflow.errors import ActionError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from amosflow.engine.activities import ArtifactStore

SETTING = "AMOS_FILE_ROOTS"
DIR_MODE = 0o700
CHUNK = 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


class _RefusedError(Exception):
    """A refusal or failure, raised in the worker thread and turned into an ActionError."""

    def __init__(
        self, reason: str, type_: str = "FileAccessDenied", *, retryable: bool = False
    ) -> None:
        self.reason = reason
        self.type = type_
        self.retryable = retryable
        super().__init__(reason)


@dataclass(frozen=True)
class _Target:
    """Where an action works: a root's name and real path, and the relative path parts."""

    root_name: str
    root_real: str
    relative: str
    parts: tuple[str, ...]


def _roots() -> dict[str, Path]:
    try:
        roots = FileSettings().roots()
    except ValueError as err:
        raise _RefusedError(f"{err}; every file action is refused until it is fixed") from None
    if not roots:
        raise _RefusedError(f"no file roots are configured on this runner: set {SETTING}")
    return roots


def _target(root: str, path: str) -> _Target:
    roots = _roots()
    if root not in roots:
        known = ", ".join(sorted(roots))
        raise _RefusedError(f"unknown root {root!r}; {SETTING} names: {known}")
    problem = spec.path_problem(path)
    if problem is not None:
        raise _RefusedError(f"root {root!r}, path {path!r}: the path {problem}")
    parts = tuple(part for part in path.split("/") if part not in {"", "."})
    return _Target(root, os.path.realpath(roots[root]), "/".join(parts), parts)


def _where(target: _Target, relative: str | None = None) -> str:
    path = target.relative if relative is None else relative
    return f"root {target.root_name!r}, path {path!r}"


def _os_failure(target: _Target, err: OSError, relative: str | None = None) -> _RefusedError:
    """Turn an OSError into a refusal without the host path (only its strerror)."""
    where = _where(target, relative)
    reason = err.strerror or type(err).__name__
    if err.errno == errno.ENOENT:
        return _RefusedError(f"{where}: does not exist", "FileNotFound")
    if err.errno in {errno.ELOOP, errno.EMLINK}:
        return _RefusedError(f"{where}: a symbolic link is on the way; links are never followed")
    if err.errno == errno.ENOTDIR:
        return _RefusedError(f"{where}: a component is not a directory (or is a symbolic link)")
    if err.errno in {errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.EEXIST}:
        return _RefusedError(f"{where}: {reason}")
    return _RefusedError(f"{where}: {reason}", "FileError", retryable=True)


def _check_inside(target: _Target, fd: int) -> None:
    """Check that the real path of an open descriptor lies inside the root (defence in depth)."""
    try:
        real = str(Path(f"/proc/self/fd/{fd}").readlink())
    except OSError:
        return  # no /proc: the descriptor walk alone keeps the path inside
    if real != target.root_real and not real.startswith(target.root_real.rstrip("/") + "/"):
        raise _RefusedError(f"{_where(target)}: resolves outside the root")


def dir_mode(mode: int) -> int:
    """The bits of a directory made for a file of ``mode``: 0700, plus r-x where it reads."""
    readers = mode & 0o044
    return DIR_MODE | readers | (readers >> 2)


@contextlib.contextmanager
def _open_dir(
    target: _Target, parts: tuple[str, ...], *, create: int | None = None
) -> Iterator[int]:
    """A descriptor of the directory ``parts`` below the root, walked without following links.

    With ``create`` (the new directories' mode), missing directories are made.
    """
    try:
        fd = os.open(target.root_real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise _RefusedError(
            f"root {target.root_name!r} cannot be opened: {err.strerror}", "FileError"
        ) from None  # a misconfigured root: not retried
    try:
        for position, part in enumerate(parts):
            where = "/".join(parts[: position + 1])
            try:
                child = _open_child_dir(fd, part, create=create)
            except OSError as err:
                raise _os_failure(target, err, where) from None
            os.close(fd)
            fd = child
        _check_inside(target, fd)
        yield fd
    finally:
        os.close(fd)


def _open_child_dir(parent: int, name: str, *, create: int | None) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if create is None:
            raise
    try:
        os.mkdir(name, create, dir_fd=parent)
    except FileExistsError:  # made by someone else meanwhile: open it as it is
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    try:
        os.fchmod(fd, create)  # exactly, whatever the umask took away
    except OSError:
        os.close(fd)
        raise
    return fd


# -- read ------------------------------------------------------------------------------------


def _read(target: _Target, encoding: str, artifacts: ArtifactStore) -> dict[str, Any]:
    if not target.parts:
        raise _RefusedError(f"{_where(target)}: is the root directory, not a file")
    with _open_dir(target, target.parts[:-1]) as parent:
        try:
            fd = os.open(target.parts[-1], _READ_FLAGS, dir_fd=parent)
        except OSError as err:
            raise _os_failure(target, err) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise _RefusedError(f"{_where(target)}: is not a regular file")
            _check_inside(target, fd)
            if info.st_size > spec.MAX_READ_BYTES:
                raise _RefusedError(
                    f"{_where(target)}: is {info.st_size} bytes, more than the"
                    f" {spec.MAX_READ_BYTES} file.read accepts",
                    "FileTooLarge",
                )
            os.set_blocking(fd, True)
            data = _read_all(target, fd)
        finally:
            os.close(fd)
    digest = hashlib.sha256(data).hexdigest()
    result: dict[str, Any] = {"encoding": encoding, "size": len(data), "sha256": digest}
    if len(data) > spec.INLINE_READ_BYTES:
        result |= {"content": artifacts.put(data), "encoding": "artifact"}
    elif encoding == "base64":
        result["content"] = base64.b64encode(data).decode("ascii")
    else:
        try:
            result["content"] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _RefusedError(
                f"{_where(target)}: is not UTF-8 text; read it with encoding 'base64'",
                "FileNotText",
            ) from None
    return result


def _read_all(target: _Target, fd: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while chunk := os.read(fd, CHUNK):
        total += len(chunk)
        if total > spec.MAX_READ_BYTES:  # grew while being read
            raise _RefusedError(
                f"{_where(target)}: grew past {spec.MAX_READ_BYTES} bytes", "FileTooLarge"
            )
        chunks.append(chunk)
    return b"".join(chunks)


# -- write -----------------------------------------------------------------------------------


def _decode(target: _Target, content: str, encoding: str) -> bytes:
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise _RefusedError(
                f"{_where(target)}: content is not valid base64", "FileContentInvalid"
            ) from None
    try:
        return content.encode("utf-8")
    except UnicodeEncodeError:
        raise _RefusedError(
            f"{_where(target)}: content is not valid Unicode text", "FileContentInvalid"
        ) from None


def _write(
    target: _Target, data: bytes, *, overwrite: bool, parents: bool, mode: int
) -> dict[str, Any]:
    if not target.parts:
        raise _RefusedError(f"{_where(target)}: is the root directory, not a file")
    name = target.parts[-1]
    digest = hashlib.sha256(data).hexdigest()
    result = {
        "root": target.root_name,
        "path": target.relative,
        "size": len(data),
        "sha256": digest,
    }
    with _open_dir(target, target.parts[:-1], create=dir_mode(mode) if parents else None) as parent:
        existing = _lstat(target, parent, name)
        if existing is not None:
            if stat.S_ISLNK(existing.st_mode):
                raise _RefusedError(
                    f"{_where(target)}: is a symbolic link; links are never written through"
                )
            if not stat.S_ISREG(existing.st_mode):
                raise _RefusedError(f"{_where(target)}: exists and is not a regular file")
            if not overwrite:
                if _same_content(parent, name, existing, data, digest):
                    return result | {"created": False}  # a retry of a write that happened
                raise _RefusedError(f"{_where(target)}: exists and overwrite is false")
        tmp = f".{name[:200]}.amos-{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o600,  # owner only until fchmod below sets the bits asked for
                dir_fd=parent,
            )
        except OSError as err:
            raise _os_failure(target, err) from None
        try:
            try:
                with os.fdopen(fd, "wb", closefd=True) as handle:
                    os.fchmod(handle.fileno(), mode)
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                if overwrite:
                    os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
                else:
                    _link_new(target, parent, tmp, name)
                os.fsync(parent)
            except OSError as err:
                raise _os_failure(target, err) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=parent)
    return result | {"created": existing is None}


def _lstat(target: _Target, parent: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise _os_failure(target, err) from None


def _same_content(
    parent: int, name: str, existing: os.stat_result, data: bytes, digest: str
) -> bool:
    if existing.st_size != len(data):
        return False
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=parent)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        os.set_blocking(fd, True)
        hasher = hashlib.sha256()
        while chunk := os.read(fd, CHUNK):
            hasher.update(chunk)
        return hasher.hexdigest() == digest
    finally:
        os.close(fd)


def _link_new(target: _Target, parent: int, tmp: str, name: str) -> None:
    """Put ``tmp`` in place as ``name`` only if ``name`` does not exist, atomically."""
    try:
        os.link(tmp, name, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
    except FileExistsError:
        raise _RefusedError(f"{_where(target)}: exists and overwrite is false") from None
    except OSError as err:
        if err.errno not in _NO_HARD_LINKS:
            raise
        # A filesystem without hard links: check, then rename (a racing writer could win).
        if _lstat(target, parent, name) is not None:
            raise _RefusedError(f"{_where(target)}: exists and overwrite is false") from None
        os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)


# -- list ------------------------------------------------------------------------------------


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def _list(target: _Target, pattern: str | None, *, recursive: bool, limit: int) -> dict[str, Any]:
    """List a directory (and below); subdirectories are opened one at a time from ``top``."""
    entries: list[dict[str, Any]] = []
    base = f"{target.relative}/" if target.relative else ""
    with _open_dir(target, target.parts) as top:
        pending: list[tuple[str, ...]] = [()]
        while pending:
            parts = pending.pop()
            subdirs: list[tuple[str, ...]] = []
            for name, info in _scan(target, top, parts):
                relative = "/".join((*parts, name))
                kind = _kind(info.st_mode)
                if pattern is None or fnmatch.fnmatchcase(name, pattern):
                    if len(entries) >= limit:
                        return _listing(entries, truncated=True)
                    entries.append(
                        {
                            "name": relative,
                            "path": base + relative,
                            "type": kind,
                            "size": info.st_size,
                            "modified": datetime.fromtimestamp(info.st_mtime, UTC).isoformat(),
                        }
                    )
                if recursive and kind == "dir":
                    subdirs.append((*parts, name))
            pending.extend(reversed(subdirs))
    return _listing(entries, truncated=False)


def _listing(entries: list[dict[str, Any]], *, truncated: bool) -> dict[str, Any]:
    entries.sort(key=lambda entry: str(entry["name"]).split("/"))
    return {"entries": entries, "truncated": truncated}


def _scan(target: _Target, top: int, parts: tuple[str, ...]) -> list[tuple[str, os.stat_result]]:
    """The (name, lstat) of each entry of the directory ``parts`` below ``top``, sorted."""
    fd = top
    try:
        for part in parts:  # each step refuses a link, so a swapped-in link is skipped
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                return []  # gone, replaced by a link, or unreadable: not descended into
            if fd != top:
                os.close(fd)
            fd = child
        try:
            with os.scandir(fd) as scan:
                names = sorted(entry.name for entry in scan)
        except OSError as err:
            if parts:
                return []
            raise _os_failure(target, err) from None
        found: list[tuple[str, os.stat_result]] = []
        for name in names:
            try:
                found.append((name, os.stat(name, dir_fd=fd, follow_symlinks=False)))
            except FileNotFoundError:
                continue  # removed while listing
        return found
    finally:
        if fd != top:
            os.close(fd)


# -- the actions -----------------------------------------------------------------------------


async def _run(
    ctx: ActionContext, action: str, work: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    try:
        return await asyncio.to_thread(work)
    except _RefusedError as err:
        raise ActionError(
            ctx.redact(f"{action}: {err.reason}"), type_=err.type, retryable=err.retryable
        ) from None


@implementation("file.read")
async def read(ctx: ActionContext, params: Any) -> dict[str, Any]:
    """Read a file of a root; return content, encoding, size and sha256."""

    def work() -> dict[str, Any]:
        return _read(_target(params.root, params.path), params.encoding, ctx.artifacts)

    return await _run(ctx, "file.read", work)


@implementation("file.write")
async def write(ctx: ActionContext, params: Any) -> dict[str, Any]:
    """Write a file of a root atomically; return root, path, size, sha256 and created."""

    def work() -> dict[str, Any]:
        target = _target(params.root, params.path)
        data = _decode(target, params.content, params.encoding)
        return _write(
            target,
            data,
            overwrite=params.overwrite,
            parents=params.parents,
            mode=spec.file_mode(params.mode),
        )

    return await _run(ctx, "file.write", work)


@implementation("file.list")
async def list_(ctx: ActionContext, params: Any) -> dict[str, Any]:
    """List a directory of a root; return its entries and whether the list was cut."""

    def work() -> dict[str, Any]:
        target = _target(params.root, params.path)
        return _list(target, params.pattern, recursive=params.recursive, limit=params.max_entries)

    return await _run(ctx, "file.list", work)
