"""The catalog: flows, config bundles and triggers as versioned JSON files in one Git repository.

Each object lives at ``<kind>/<folder>/<name>.json``: a folder is a namespace, so every
lookup names the folder it looks in, and nothing can find an object of a folder it did not
name (decision 0041).
"""

from __future__ import annotations

import difflib
import fcntl
import io
import json
import logging
import stat
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dulwich import porcelain
from dulwich.objects import Blob, Tree
from dulwich.repo import Repo

from amosflow.catalog import _git
from amosflow.catalog._kinds import (
    check_document,
    kind_path,
    object_path,
    registered_kinds,
    render_document,
)
from amosflow.dsl import content_hash
from amosflow.errors import CatalogError, ConflictError, NotFoundError

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Iterator

    from dulwich.objects import Commit, ObjectID

__all__ = ["Catalog", "Entry", "Version"]

_log = logging.getLogger(__name__)
_MIN_COMMIT_PREFIX = 7  # git's shortest abbreviated commit id


@dataclass(frozen=True, slots=True)
class Version:
    """One version of a catalog object: the commit that made it and the hash of its content."""

    commit: str
    content_hash: str
    author: str
    message: str
    committed_at: datetime
    deleted: bool = False
    """True for the commit that removed the object; its ``content_hash`` is then empty."""
    made: bool = field(default=False, compare=False)
    """True when the call that returned this version made its commit (a save or a delete)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A catalog object as stored at one version."""

    kind: str
    name: str
    document: dict[str, Any]
    version: Version
    folder: str = "default"


@dataclass(frozen=True, slots=True)
class _Latest:
    """What the latest-version lookups found at one head commit.

    Finding an object's latest version walks the history back to the commit that last changed
    it, which costs milliseconds and grows with the history. Every run start and webhook
    delivery asks for it, so the answers are kept until the head moves (a save here, or a
    commit by another process: the head is read on every call).
    """

    head: bytes
    found: dict[bytes, tuple[Version, bytes] | None] = field(default_factory=dict)


class Catalog:
    """A Git repository of flows, config bundles and triggers, safe for threads and processes."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        _git.open_or_init(self._path)
        with self._open() as repo:
            self._lock_path = Path(repo.controldir()) / "amos.lock"
            self._bare = repo.bare
        self._lock = threading.Lock()
        self._hashes: dict[bytes, str] = {}
        self._latest = _Latest(b"")

    @classmethod
    def clone(cls, source: str, path: Path) -> Catalog:
        """Clone a remote catalog into ``path`` and open it, so pull and push have an origin."""
        try:
            porcelain.clone(source, str(path), errstream=io.BytesIO()).close()
        except (OSError, porcelain.Error) as exc:
            raise CatalogError(f"cannot clone the catalog from {source}: {exc}") from exc
        return cls(path)

    @property
    def path(self) -> Path:
        """The directory of the repository (its working copy, unless it is bare)."""
        return self._path

    def head(self) -> str:
        """Return the current commit, so a caller can pin a consistent view of the catalog."""
        with self._open() as repo:
            return self._head(repo).decode()

    def save(
        self,
        kind: str,
        name: str,
        document: dict[str, Any],
        *,
        folder: str,
        author: str,
        message: str,
    ) -> Version:
        """Validate and commit a document; identical content returns the current version."""
        text = render_document(document)
        check_document(kind, name, document)
        path = object_path(kind, folder, name)
        who = _git.identity(author)
        data = text.encode()
        with self._write_lock(), self._open() as repo:
            head = self._head(repo)
            current = _git.entry_id(repo, _git.commit_at(repo, head).tree, path.encode())
            if current is not None and current == _blob_id(data):
                return self._version(
                    repo, next(_git.file_changes(repo, head, path.encode()))[0], current
                )
            commit = _git.commit_change(
                repo, head, path.encode(), data, who=who, message=message or f"Save {path}"
            )
            self._sync_working_copy(repo, path, data)
            return replace(self._version(repo, commit, _blob_id(data)), made=True)

    def delete(self, kind: str, name: str, *, folder: str, author: str, message: str) -> Version:
        """Commit the removal of an object; its history stays readable, in its folder."""
        path = object_path(kind, folder, name)
        who = _git.identity(author)
        with self._write_lock(), self._open() as repo:
            head = self._head(repo)
            if _git.entry_id(repo, _git.commit_at(repo, head).tree, path.encode()) is None:
                raise NotFoundError(f"no {kind} named {name!r}")
            commit = _git.commit_change(
                repo, head, path.encode(), None, who=who, message=message or f"Delete {path}"
            )
            self._sync_working_copy(repo, path, None)
            return replace(self._version(repo, commit, None), made=True)

    def get(self, kind: str, name: str, version: str | None = None, *, folder: str) -> Entry:
        """Return the latest object, or one of its versions (commit id or prefix, content hash)."""
        path = object_path(kind, folder, name)
        with self._open() as repo:
            head = self._head(repo)
            if version is not None:
                commit, blob = self._locate(repo, head, kind, name, path.encode(), version=version)
                document = self._document(repo, blob)
                return Entry(kind, name, document, self._version(repo, commit, blob), folder)
            latest = self._latest if self._latest.head == head else _Latest(head)
            self._latest = latest
            key = path.encode()
            if key not in latest.found:
                try:
                    commit, blob = self._locate(repo, head, kind, name, key, version=None)
                except NotFoundError:
                    latest.found[key] = None
                    raise
                latest.found[key] = (self._version(repo, commit, blob), _git.read_blob(repo, blob))
        hit = latest.found[key]
        if hit is None:
            raise NotFoundError(f"no {kind} named {name!r}")
        return Entry(kind, name, json.loads(hit[1]), hit[0], folder)

    def exists(self, kind: str, name: str, *, folder: str) -> bool:
        """Whether ``folder`` holds ``name`` at the latest commit."""
        path = object_path(kind, folder, name).encode()
        with self._open() as repo:
            tree = _git.commit_at(repo, self._head(repo)).tree
            return _git.entry_id(repo, tree, path) is not None

    def folders_holding(self, kind: str, name: str, *, ever: bool = False) -> builtins.list[str]:
        """The folders whose namespace holds ``name`` of ``kind``, sorted.

        At the latest commit; with ``ever``, at any commit (a deleted object's history stays
        in its folder).
        """
        object_path(kind, "default", name)  # refuse an unsafe name before looking
        with self._open() as repo:
            head = self._head(repo)
            trees = (
                [c.commit.tree for c in repo.get_walker(include=[head])]
                if ever
                else [_git.commit_at(repo, head).tree]
            )
            found: set[str] = set()
            for tree in trees:
                found.update(
                    folder
                    for folder in self._folders(repo, tree, kind)
                    if folder not in found
                    and _git.entry_id(repo, tree, f"{kind}/{folder}/{name}.json".encode())
                    is not None
                )
            return sorted(found)

    def history(self, kind: str, name: str, *, folder: str) -> list[Version]:
        """Return every version of an object, newest first, including its deletions."""
        path = object_path(kind, folder, name).encode()
        with self._open() as repo:
            versions = [
                self._version(repo, commit, blob)
                for commit, blob in _git.file_changes(repo, self._head(repo), path)
            ]
        if not versions:
            raise NotFoundError(f"no {kind} named {name!r}")
        return versions

    def diff(
        self,
        kind: str,
        name: str,
        from_version: str,
        to_version: str | None = None,
        *,
        folder: str,
    ) -> str:
        """Return the unified diff between two versions (``to_version`` None = latest)."""
        path = object_path(kind, folder, name)
        texts = []
        with self._open() as repo:
            for version in (from_version, to_version):
                commit, blob = self._locate(
                    repo, self._head(repo), kind, name, path.encode(), version=version
                )
                label = f"{path}@{commit.id.decode()[:12]}"
                texts.append((label, _git.read_blob(repo, blob).decode()))
        (old_label, old), (new_label, new) = texts
        lines = difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), old_label, new_label
        )
        return "".join(lines)

    def pull(self) -> str:
        """Fast-forward the working copy from its remote and return the new head commit."""
        with self._write_lock():
            with self._open() as repo:
                self._require_remote(repo)
                branch = _git.current_branch(repo)
            try:
                porcelain.pull(
                    str(self._path),
                    refspecs=[branch],
                    outstream=io.BytesIO(),
                    errstream=io.BytesIO(),
                    fast_forward=True,
                )
            except KeyError:
                pass  # the remote has no such branch yet: nothing to pull
            except porcelain.DivergedBranches as exc:
                raise ConflictError(
                    "the catalog and its remote have diverged; merge with git"
                ) from exc
            except (OSError, porcelain.Error) as exc:
                raise CatalogError(f"cannot pull the catalog: {exc}") from exc
        return self.head()

    def push(self) -> str:
        """Push the current branch to the remote and return the commit pushed."""
        with self._write_lock():
            with self._open() as repo:
                self._require_remote(repo)
                branch = _git.current_branch(repo)
                head = self._head(repo)
            try:
                result = porcelain.push(
                    str(self._path),
                    refspecs=[branch + b":" + branch],
                    outstream=io.BytesIO(),
                    errstream=io.BytesIO(),
                )
            except porcelain.DivergedBranches as exc:
                raise ConflictError("the remote has commits the catalog lacks; pull first") from exc
            except (OSError, porcelain.Error) as exc:
                raise CatalogError(f"cannot push the catalog: {exc}") from exc
        refused = {ref: status for ref, status in (result.ref_status or {}).items() if status}
        if refused:
            raise ConflictError(f"the remote refused the push: {refused}")
        return head.decode()

    def list(self, kind: str, folder: str | None = None) -> builtins.list[Entry]:
        """Return the latest version of every object of a kind, by folder then name.

        ``folder`` limits the listing to one folder; the caller decides which folders a
        listing may show.
        """
        root = kind_path(kind).encode()
        with self._open() as repo:
            head = self._head(repo)
            tree = _git.commit_at(repo, head).tree
            wanted = self._folders(repo, tree, kind) if folder is None else [folder]
            located: list[tuple[str, str, bytes]] = []
            for each in wanted:
                prefix = object_path(kind, each, "x").rsplit("/", 1)[0].encode()
                folder_id = _git.entry_id(repo, tree, prefix)
                if folder_id is None or not isinstance(repo[folder_id], Tree):
                    continue
                located += [
                    (each, item.path.decode()[: -len(".json")], prefix + b"/" + item.path)
                    for item in repo[folder_id].items()  # type: ignore[attr-defined]
                    if item.path.endswith(b".json")
                ]
            located.sort()
            changes = _git.last_changes(repo, head, [path for _, _, path in located], root)
            entries = []
            for each, name, path in located:
                blob = _git.entry_id(repo, tree, path)
                assert blob is not None
                version = self._version(repo, changes[path], blob)
                entries.append(Entry(kind, name, self._document(repo, blob), version, each))
            return entries

    def keep_if(
        self, kind: str, name: str, version: Version, *, folder: str, durable: Callable[[], None]
    ) -> Version:
        """Keep the commit that made ``version`` only if ``durable()`` (its record) succeeds.

        When it raises, the commit is undone and the error goes on to the caller.
        """
        try:
            durable()
        except BaseException:
            self.undo(kind, name, version, folder=folder)
            raise
        return version

    def undo(self, kind: str, name: str, version: Version, *, folder: str) -> None:
        """Take back the commit that made ``version``, whose audit record could not be written.

        HEAD moves back when nothing was committed on top of it since; otherwise a new commit
        restores the object as it was before.
        """
        if not version.made:
            return  # nothing was committed by that call, so there is nothing to take back
        path = object_path(kind, folder, name)
        with self._write_lock(), self._open() as repo:
            made = _git.commit_at(repo, version.commit.encode())  # type: ignore[arg-type]
            parent = made.parents[0]
            before = _git.entry_id(repo, _git.commit_at(repo, parent).tree, path.encode())
            data = None if before is None else _git.read_blob(repo, before)
            head = self._head(repo)
            if head != made.id or not _git.reset_head(repo, head, parent):
                _git.commit_change(
                    repo,
                    head,
                    path.encode(),
                    data,
                    who=_git.SYSTEM_IDENTITY,
                    message=f"Undo {version.commit[:12]}: its audit record was not written",
                )
            self._sync_working_copy(repo, path, data)

    def adopt_legacy(
        self, folder_of: Callable[[str, str], str]
    ) -> builtins.list[tuple[str, str, str]]:
        """Move objects saved before folders were namespaces into ``<kind>/<folder>/``.

        ``folder_of(kind, name)`` says where each belongs (the store's record of its folder).
        One commit moves them all; returns each move as (kind, folder, name).
        """
        with self._write_lock(), self._open() as repo:
            head = self._head(repo)
            tree = _git.commit_at(repo, head).tree
            moves: list[tuple[str, str, ObjectID]] = []
            for kind in registered_kinds():
                root = _git.entry_id(repo, tree, kind.encode())
                if root is None or not isinstance(repo[root], Tree):
                    continue
                for item in repo[root].items():  # type: ignore[attr-defined]
                    if item.path.endswith(b".json") and not stat.S_ISDIR(item.mode):
                        name = item.path.decode()[: -len(".json")]
                        target = object_path(kind, folder_of(kind, name), name)
                        moves.append((f"{kind}/{name}.json", target, item.sha))
            if not moves:
                return []
            _git.commit_changes(
                repo,
                head,
                [(old.encode(), None) for old, _, _ in moves]
                + [(new.encode(), blob) for _, new, blob in moves],
                who=_git.SYSTEM_IDENTITY,
                message="Move catalog objects into their folders",
            )
            for old, new, blob in moves:
                self._sync_working_copy(repo, old, None)
                self._sync_working_copy(repo, new, _git.read_blob(repo, blob))
            return [tuple(new.removesuffix(".json").split("/")) for _, new, _ in moves]  # type: ignore[misc]

    @contextmanager
    def _open(self) -> Iterator[Repo]:
        # A fresh Repo per call: dulwich objects are not shared across threads.
        with Repo(str(self._path)) as repo:
            yield repo

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        with self._lock, self._lock_path.open("a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            began = time.time()
            try:
                yield
            except OSError:
                _drop_stale_git_locks(self._lock_path.parent, began)
                raise
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _head(repo: Repo) -> ObjectID:
        head = _git.head_id(repo)
        if head is None:
            raise CatalogError("the catalog repository has no commit on its current branch")
        return head

    @staticmethod
    def _folders(repo: Repo, tree: ObjectID, kind: str) -> builtins.list[str]:
        """The folders that have a directory of ``kind`` at ``tree``, sorted."""
        root = _git.entry_id(repo, tree, kind_path(kind).encode())
        if root is None or not isinstance(repo[root], Tree):
            return []
        return sorted(
            item.path.decode()
            for item in repo[root].items()  # type: ignore[attr-defined]
            if stat.S_ISDIR(item.mode)
        )

    def _require_remote(self, repo: Repo) -> None:
        try:
            repo.get_config().get((b"remote", b"origin"), b"url")
        except KeyError:
            raise CatalogError(f"the catalog at {self._path} has no remote 'origin'") from None

    def _locate(
        self, repo: Repo, head: ObjectID, kind: str, name: str, path: bytes, *, version: str | None
    ) -> tuple[Commit, ObjectID]:
        """Find the commit that made the requested version and the blob it holds.

        A version is looked for only among the commits that changed this object, so asking
        for a version says nothing about the rest of the repository: a commit of another
        object, a prefix shared with other commits or no such commit all answer alike.
        """
        missing = f"no {kind} named {name!r}" + (f" at version {version}" if version else "")
        changes = _git.file_changes(repo, head, path)
        if version is None:
            latest = next(changes, None)
            if latest is None or latest[1] is None:
                raise NotFoundError(missing)
            return latest[0], latest[1]
        wanted = version.lower()
        for commit, blob in changes:
            if blob is None:
                continue
            if wanted.startswith("sha256:"):
                if self._content_hash(repo, blob) == wanted:
                    return commit, blob
            elif len(wanted) >= _MIN_COMMIT_PREFIX and commit.id.decode().startswith(wanted):
                return commit, blob
        raise NotFoundError(missing)

    def _document(self, repo: Repo, blob: ObjectID) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(_git.read_blob(repo, blob))
        return document

    def _content_hash(self, repo: Repo, blob: ObjectID) -> str:
        cached = self._hashes.get(blob)
        if cached is None:
            cached = self._hashes[blob] = content_hash(self._document(repo, blob))
        return cached

    def _version(self, repo: Repo, commit: Commit, blob: ObjectID | None) -> Version:
        author = commit.author.decode(errors="replace").removesuffix(" <>")
        return Version(
            commit=commit.id.decode(),
            content_hash="" if blob is None else self._content_hash(repo, blob),
            author=author,
            message=commit.message.decode(errors="replace").rstrip("\n"),
            committed_at=datetime.fromtimestamp(commit.commit_time, UTC),
            deleted=blob is None,
        )

    def _sync_working_copy(self, repo: Repo, path: str, data: bytes | None) -> None:
        """Mirror a commit into the working copy and index, so `git status` stays clean."""
        if self._bare:
            return
        target = self._path / path
        try:
            if data is None:
                target.unlink(missing_ok=True)
                if target.parent.is_dir() and not any(target.parent.iterdir()):
                    target.parent.rmdir()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(f".{target.name}.tmp")
                partial.write_bytes(data)
                partial.replace(target)
            repo.get_worktree().stage([path])
        except OSError:
            # The commit stands; only the checkout lags, and the next pull or save repairs it.
            _log.warning("could not update %s in the catalog working copy", path, exc_info=True)


def _blob_id(data: bytes) -> ObjectID:
    return Blob.from_string(data).id


#: File times come from a coarse clock that may lag ``time.time()`` by a tick.
_LOCK_TIME_SLACK_S = 1.0


def _drop_stale_git_locks(control: Path, since: float) -> None:
    """Remove the ``.lock`` files a write that failed under our lock left behind.

    Dulwich writes each object and ref to ``<name>.lock`` and renames it; when flushing that
    file fails (a full disk: the bytes only meet the disk at the flush), the lock file stays,
    and every later write of the same object or ref fails with ``File exists`` long after
    space was freed. Under the catalog's exclusive lock no other writer of ours is mid-write,
    and only lock files made since the write began are removed.
    """
    for lock in control.rglob("*.lock"):
        if lock.parent == control and lock.name == "amos.lock":
            continue
        try:
            if lock.stat().st_mtime >= since - _LOCK_TIME_SLACK_S:
                lock.unlink()
                _log.warning("removed %s left by a catalog write that failed", lock.name)
        except OSError:
            continue  # gone meanwhile, or the disk refuses even this: the next failure retries
