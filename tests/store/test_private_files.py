"""The node's data files are the owner's alone whatever the umask: the SQLite store and artifacts."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from amosflow.engine.activities import ArtifactStore
from amosflow.store import open_store
from tests.audit.chain import build


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run the test under umask 022, the usual login default that made files world-readable."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _modes(directory: Path) -> dict[str, int]:
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in directory.iterdir()}


@pytest.mark.usefixtures("open_umask")
def test_a_new_sqlite_store_and_its_wal_are_private(tmp_path: Path) -> None:
    """amos.db, its -wal and -shm and its lock file are 0600 even under umask 022."""
    store = open_store(f"sqlite:///{tmp_path / 'data' / 'amos.db'}")
    try:
        build(store, 3)
        modes = _modes(tmp_path / "data")
    finally:
        store.dispose()
    assert {"amos.db", "amos.db-wal", "amos.db-shm", "amos.db.lock"} <= modes.keys()
    assert modes == dict.fromkeys(modes, 0o600)
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700


@pytest.mark.usefixtures("open_umask")
def test_an_older_world_readable_store_is_repaired_when_opened(tmp_path: Path) -> None:
    """A database file an older install left 0644 is 0600 after the next open."""
    url = f"sqlite:///{tmp_path / 'amos.db'}"
    open_store(url).dispose()
    (tmp_path / "amos.db").chmod(0o644)
    (tmp_path / "amos.db.lock").chmod(0o644)
    open_store(url).dispose()
    assert _modes(tmp_path)["amos.db"] == 0o600
    assert _modes(tmp_path)["amos.db.lock"] == 0o600


@pytest.mark.usefixtures("open_umask")
def test_artifacts_are_private_files_in_private_directories(tmp_path: Path) -> None:
    """A stored value is 0600 and the directories holding it 0700 even under umask 022."""
    ref = ArtifactStore(tmp_path / "artifacts").put(b"personal data of a run")
    digest = ref["sha256"]
    shard = tmp_path / "artifacts" / digest[:2]
    assert stat.S_IMODE((tmp_path / "artifacts").stat().st_mode) == 0o700
    assert stat.S_IMODE(shard.stat().st_mode) == 0o700
    assert _modes(shard) == {digest: 0o600}
