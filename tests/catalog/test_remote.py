"""A catalog working copy that pulls from and pushes to a remote (a bare repository on disk)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dulwich.repo import Repo

from amosflow.catalog import Catalog
from amosflow.errors import CatalogError, ConflictError
from tests.catalog.helpers import AUTHOR, flow


@pytest.fixture
def remote(tmp_path: Path) -> str:
    Repo.init_bare(str(tmp_path / "remote.git"), mkdir=True, default_branch=b"main").close()
    return str(tmp_path / "remote.git")


def test_a_pushed_save_reaches_a_second_clone(tmp_path: Path, remote: str) -> None:
    """Save and push in one clone; a fresh clone of the remote reads the same version."""
    first = Catalog.clone(remote, tmp_path / "first")
    version = first.save(
        "flows", "hello", flow("hello"), author=AUTHOR, message="add", folder="default"
    )
    assert first.push() == version.commit
    with Repo(remote) as bare:
        assert bare.refs[b"refs/heads/main"].decode() == version.commit
    second = Catalog.clone(remote, tmp_path / "second")
    assert second.get("flows", "hello", folder="default").version == version
    assert (tmp_path / "second" / "flows" / "default" / "hello.json").exists()


def test_pull_brings_in_commits_pushed_by_another_clone(tmp_path: Path, remote: str) -> None:
    """A commit pushed from one clone is visible in another after pull, files included."""
    first = Catalog.clone(remote, tmp_path / "first")
    first.save("flows", "hello", flow("hello", 1), author=AUTHOR, message="v1", folder="default")
    first.push()
    second = Catalog.clone(remote, tmp_path / "second")
    newer = second.save(
        "flows", "hello", flow("hello", 2), author=AUTHOR, message="v2", folder="default"
    )
    second.push()
    assert first.pull() == newer.commit
    assert first.get("flows", "hello", folder="default").document == flow("hello", 2)
    assert '"x": 2' in (tmp_path / "first" / "flows" / "default" / "hello.json").read_text()


def test_pushing_over_commits_it_lacks_is_a_conflict(tmp_path: Path, remote: str) -> None:
    """A push that would drop the remote's newer commits is refused as ConflictError."""
    first = Catalog.clone(remote, tmp_path / "first")
    first.save("flows", "hello", flow("hello", 1), author=AUTHOR, message="v1", folder="default")
    first.push()
    second = Catalog.clone(remote, tmp_path / "second")
    second.save(
        "flows", "hello", flow("hello", 2), author=AUTHOR, message="theirs", folder="default"
    )
    second.push()
    first.save("flows", "hello", flow("hello", 3), author=AUTHOR, message="ours", folder="default")
    with pytest.raises(ConflictError):
        first.push()
    with pytest.raises(ConflictError):
        first.pull()


def test_pull_from_an_empty_remote_changes_nothing(tmp_path: Path, remote: str) -> None:
    """Pulling before anyone pushed keeps the local head."""
    catalog = Catalog.clone(remote, tmp_path / "clone")
    assert catalog.pull() == catalog.head()


def test_a_catalog_without_a_remote_cannot_push_or_pull(tmp_path: Path) -> None:
    """push and pull on a purely local catalog raise CatalogError naming the missing remote."""
    catalog = Catalog(tmp_path / "local")
    with pytest.raises(CatalogError, match="no remote"):
        catalog.push()
    with pytest.raises(CatalogError, match="no remote"):
        catalog.pull()
