"""The key file provider: created 0600 on first start, refused when others can read it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from amosflow.errors import VaultError
from amosflow.store import Store
from amosflow.vault import KeyFileProvider, open_vault


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_creates_a_private_key_file(tmp_path: Path) -> None:
    """The key ring is created with mode 0600 in a 0700 directory, with a random id."""
    path = tmp_path / "home" / "vault" / "kek.json"
    one = KeyFileProvider(path)
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    other = KeyFileProvider(tmp_path / "other" / "kek.json")
    assert one.kek_id != other.kek_id
    assert KeyFileProvider(path).kek_id == one.kek_id


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_looser_permissions_are_refused(tmp_path: Path, mode: int) -> None:
    """A key file readable by group or others refuses to load, naming the fix."""
    path = tmp_path / "vault" / "kek.json"
    KeyFileProvider(path)
    path.chmod(mode)
    with pytest.raises(VaultError, match="chmod 600"):
        KeyFileProvider(path)


def test_the_api_vault_refuses_to_start_on_a_loose_key_file(store: Store, tmp_path: Path) -> None:
    """open_vault raises on an unsafe key file instead of starting sealed or unsafe."""
    home = tmp_path / "home"
    open_vault(store, home)
    (home / "vault" / "kek.json").chmod(0o644)
    with pytest.raises(VaultError, match="refusing the key file"):
        open_vault(store, home)


def test_a_reader_never_creates_the_key_file(store: Store, tmp_path: Path) -> None:
    """Without a key file and without leave to create one, the vault starts sealed."""
    home = tmp_path / "home"
    vault = open_vault(store, home, create=False)
    assert vault.sealed
    assert not (home / "vault" / "kek.json").exists()


def test_rotation_persists_and_retired_keys_leave_the_file(tmp_path: Path) -> None:
    """rotate() adds a version on disk; retire() removes its key; current cannot be retired."""
    path = tmp_path / "vault" / "kek.json"
    provider = KeyFileProvider(path)
    assert provider.rotate() == 2
    assert KeyFileProvider(path, create=False).versions() == [1, 2]
    with pytest.raises(VaultError, match="current"):
        provider.retire(2)
    provider.retire(1)
    assert KeyFileProvider(path, create=False).versions() == [2]
    assert _mode(path) == 0o600
