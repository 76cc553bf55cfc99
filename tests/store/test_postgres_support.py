"""The throw-away PostgreSQL helper finds the binaries or says clearly what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.postgres import PostgresUnavailableError, find_bin_dir


def test_missing_binaries_fail_with_an_install_hint(tmp_path: Path) -> None:
    """Without initdb anywhere the helper raises an error that says how to install it."""
    with pytest.raises(PostgresUnavailableError, match="make deps"):
        find_bin_dir(path=str(tmp_path), debian_root=tmp_path)


def test_debian_versions_are_searched_newest_first(tmp_path: Path) -> None:
    """With nothing on PATH the highest /usr/lib/postgresql/N/bin wins."""
    for version in ("9", "15", "13"):
        bin_dir = tmp_path / version / "bin"
        bin_dir.mkdir(parents=True)
        for name in ("initdb", "pg_ctl"):
            (bin_dir / name).touch()
    assert (
        find_bin_dir(path=str(tmp_path / "empty"), debian_root=tmp_path) == tmp_path / "15" / "bin"
    )
