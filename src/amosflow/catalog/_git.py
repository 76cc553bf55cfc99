"""Git plumbing on dulwich: commits built from trees, file lookups and per-file history walks."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from dulwich.errors import NotGitRepository, NotTreeError
from dulwich.object_store import commit_tree_changes, tree_lookup_path
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import InvalidUserIdentity, Repo, check_user_identity

from amosflow.errors import ConflictError, Diagnostic, NotFoundError, ValidationFailedError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from dulwich.objects import ObjectID
    from dulwich.refs import Ref

BRANCH = b"refs/heads/main"
HEAD = b"HEAD"
SYSTEM_IDENTITY = b"AMOS FLOW <amos@localhost>"
_FILE_MODE = 0o100644


def open_or_init(path: Path) -> None:
    """Make ``path`` a repository whose current branch has at least one commit."""
    try:
        Repo(str(path)).close()
    except NotGitRepository:
        path.mkdir(parents=True, exist_ok=True)
        Repo.init(str(path), default_branch=b"main").close()
    with Repo(str(path)) as repo:
        if head_id(repo) is not None:
            return
        # A fresh init or a clone of an empty remote: start `main` with an empty commit.
        repo.refs.set_symbolic_ref(_ref(HEAD), _ref(BRANCH))
        tree = Tree()
        repo.object_store.add_object(tree)
        commit = new_commit(tree.id, [], SYSTEM_IDENTITY, "Initialise the AMOS FLOW catalog")
        repo.object_store.add_object(commit)
        repo.refs.add_if_new(_ref(HEAD), commit.id)


def _ref(name: bytes) -> Ref:
    return name  # type: ignore[return-value]  # Ref is a NewType of bytes


def head_id(repo: Repo) -> ObjectID | None:
    """Return the commit the current branch points at, or None before the first commit."""
    try:
        return repo.refs[_ref(HEAD)]
    except KeyError:
        return None


def current_branch(repo: Repo) -> bytes:
    """Return the full ref name HEAD points at (``refs/heads/main``)."""
    names, _ = repo.refs.follow(_ref(HEAD))
    return bytes(names[-1])


def commit_at(repo: Repo, sha: ObjectID) -> Commit:
    """Return the commit object with this id."""
    obj = repo[sha]
    if not isinstance(obj, Commit):
        raise NotFoundError(f"{sha.decode()} is not a commit")
    return obj


def entry_id(repo: Repo, tree: ObjectID, path: bytes) -> ObjectID | None:
    """Return the id of the object at ``path`` in a tree, or None when it is absent."""
    try:
        return tree_lookup_path(repo.object_store.__getitem__, tree, path)[1]
    except (KeyError, NotTreeError):
        return None


def read_blob(repo: Repo, sha: ObjectID) -> bytes:
    """Return the content of a blob."""
    obj = repo[sha]
    if not isinstance(obj, Blob):
        raise NotFoundError(f"{sha.decode()} is not a file")
    return obj.as_raw_string()


def identity(author: str) -> bytes:
    """Turn ``Name <email>`` (or a bare name) into a Git identity, refusing malformed ones."""
    value = author.strip() if "<" in author else f"{author.strip()} <>"
    raw = value.encode()
    try:
        check_user_identity(raw)
    except InvalidUserIdentity:
        raise ValidationFailedError([Diagnostic("", f"invalid author {author!r}")]) from None
    if not author.strip():
        raise ValidationFailedError([Diagnostic("", "an author is required")])
    return raw


def new_commit(tree: ObjectID, parents: list[ObjectID], who: bytes, message: str) -> Commit:
    """Build (not store) a commit authored and committed by ``who`` now, in UTC."""
    commit = Commit()
    commit.tree = tree
    commit.parents = parents
    commit.author = commit.committer = who
    commit.author_time = commit.commit_time = int(time.time())
    commit.author_timezone = commit.commit_timezone = 0
    commit.encoding = b"UTF-8"
    commit.message = message.rstrip("\n").encode() + b"\n"
    return commit


def commit_change(
    repo: Repo, parent: ObjectID, path: bytes, content: bytes | None, *, who: bytes, message: str
) -> Commit:
    """Commit ``content`` at ``path`` (None removes it) on top of ``parent`` and move HEAD."""
    blob: ObjectID | None = None
    if content is not None:
        stored = Blob.from_string(content)
        repo.object_store.add_object(stored)
        blob = stored.id
    return commit_changes(repo, parent, [(path, blob)], who=who, message=message)


def commit_changes(
    repo: Repo,
    parent: ObjectID,
    changes: list[tuple[bytes, ObjectID | None]],
    *,
    who: bytes,
    message: str,
) -> Commit:
    """Commit each path to a stored blob (None removes it) in one commit, and move HEAD."""
    tree_changes: list[tuple[bytes, int | None, ObjectID | None]] = [
        (path, None if blob is None else _FILE_MODE, blob) for path, blob in changes
    ]
    tree = commit_tree_changes(repo.object_store, commit_at(repo, parent).tree, tree_changes)
    commit = new_commit(tree, [parent], who, message)
    repo.object_store.add_object(commit)
    # Compare-and-swap: the lock makes this succeed unless someone bypassed it (git CLI, pull).
    if not repo.refs.set_if_equals(_ref(HEAD), parent, commit.id, message=b"amos: commit"):
        raise ConflictError("the catalog changed during the commit; retry")
    return commit


def reset_head(repo: Repo, expected: ObjectID, target: ObjectID) -> bool:
    """Move HEAD back from ``expected`` to ``target``; False when HEAD moved on meanwhile."""
    return bool(repo.refs.set_if_equals(_ref(HEAD), expected, target, message=b"amos: undo"))


def file_changes(
    repo: Repo, start: ObjectID, path: bytes
) -> Iterator[tuple[Commit, ObjectID | None]]:
    """Yield, newest first, each commit that changed ``path`` and the blob it left (None = removed).

    Like ``git log -- path``: at a merge, history follows a parent that has the same content.
    """
    sha: ObjectID | None = start
    while sha is not None:
        commit = commit_at(repo, sha)
        blob = entry_id(repo, commit.tree, path)
        same = next(
            (p for p in commit.parents if entry_id(repo, commit_at(repo, p).tree, path) == blob),
            None,
        )
        if same is not None:
            sha = same
            continue
        if commit.parents or blob is not None:
            yield commit, blob
        sha = commit.parents[0] if commit.parents else None


def last_changes(
    repo: Repo, start: ObjectID, paths: list[bytes], folder: bytes
) -> dict[bytes, Commit]:
    """Return the commit that last changed each path, walking the history once for all of them."""
    found: dict[bytes, Commit] = {}
    pending = set(paths)
    sha: ObjectID | None = start
    while sha is not None and pending:
        commit = commit_at(repo, sha)
        if not commit.parents:
            found.update(dict.fromkeys(pending, commit))
            break
        first = commit.parents[0]
        first_tree = commit_at(repo, first).tree
        if entry_id(repo, commit.tree, folder) != entry_id(repo, first_tree, folder):
            for path in sorted(pending):
                if entry_id(repo, commit.tree, path) == entry_id(repo, first_tree, path):
                    continue
                # Changed against the first parent: a plain change, or a merge that needs the walk.
                pending.discard(path)
                found[path] = next(file_changes(repo, sha, path))[0]
        sha = first
    return found
