"""The vault service on SQLite and PostgreSQL with each key provider."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import select, update

from amosflow import audit
from amosflow import vault as vault_package
from amosflow.errors import (
    ActionError,
    ConflictError,
    NotFoundError,
    ValidationFailedError,
    VaultError,
    VaultSealedError,
)
from amosflow.store import SecretRow, SecretVersionRow, Store
from amosflow.store import runs as run_store
from amosflow.vault import KeyFileProvider, KeyProvider, Vault
from tests.vault.conftest import CANARY


def test_set_and_reveal_round_trip(vault: Vault) -> None:
    """A value set is revealed unchanged; each set adds a version; metadata carries no value."""
    meta, created = vault.set("erp.token", CANARY, "default")
    assert created
    assert (meta.name, meta.folder, meta.version) == ("erp.token", "default", 1)
    assert vault.reveal("erp.token", "default") == CANARY
    meta, created = vault.set("erp.token", CANARY + "-2", "default")
    assert not created
    assert meta.version == 2
    assert vault.reveal("erp.token", "default") == CANARY + "-2"
    assert CANARY not in repr(vault.metadata("erp.token", "default"))
    assert [m.name for m in vault.list()] == ["erp.token"]


def test_only_ciphertext_is_stored(vault: Vault, store: Store) -> None:
    """No column of a stored version contains the value."""
    vault.set("erp.token", CANARY, "default")
    with store.session(read_only=True) as session:
        row = session.scalars(select(SecretVersionRow)).one()
    for data in (row.ciphertext, row.nonce, row.wrapped_key, row.kek_id.encode()):
        assert CANARY.encode() not in data


def test_a_wrong_folder_cannot_read_another_folders_secret(vault: Vault, store: Store) -> None:
    """A name is a secret per folder: another folder finds nothing; moving the row breaks the AAD."""
    vault.set("ledger.key", CANARY, "finance")
    assert vault.reveal("ledger.key", "finance") == CANARY
    with pytest.raises(NotFoundError) as hidden:
        vault.reveal("ledger.key", "default")
    with pytest.raises(NotFoundError) as missing:
        vault.reveal("never.set", "default")
    assert str(hidden.value).replace("ledger.key", "X") == str(missing.value).replace(
        "never.set", "X"
    )
    vault.set("ledger.key", "other", "default")  # default's own secret of that name
    assert vault.reveal("ledger.key", "finance") == CANARY
    assert vault.reveal("ledger.key", "default") == "other"
    assert vault.holders("ledger.key") == ["default", "finance"]
    vault.set("moved.key", CANARY, "finance")
    with store.session() as session:  # another folder's row, and the version moved under it
        session.add(SecretRow(folder="default", name="moved.key", current_version=1))
        session.flush()
        session.execute(
            update(SecretVersionRow)
            .where(SecretVersionRow.name == "moved.key")
            .values(folder="default")
        )
    with pytest.raises(VaultError, match="failed authentication") as caught:
        vault.reveal("moved.key", "default")
    assert CANARY not in str(caught.value)


@pytest.mark.parametrize("column", ["ciphertext", "nonce", "wrapped_key"])
def test_a_tampered_row_fails_with_a_clear_error(vault: Vault, store: Store, column: str) -> None:
    """One flipped byte in a stored column makes reveal raise VaultError, without the value."""
    vault.set("erp.token", CANARY, "default")
    with store.session() as session:
        row = session.scalars(select(SecretVersionRow)).one()
        data = bytearray(getattr(row, column))
        data[len(data) // 2] ^= 0x80
        setattr(row, column, bytes(data))
    with pytest.raises(VaultError) as caught:
        vault.reveal("erp.token", "default")
    assert "erp.token" in str(caught.value)
    assert CANARY not in str(caught.value)


def test_rotation_rewraps_online_and_keeps_values(vault: Vault, provider: KeyProvider) -> None:
    """rotate_kek adds a KEK version and re-wraps every data key; every value still reads."""
    vault.set("a", CANARY + "-a", "default")
    vault.set("b", CANARY + "-b", "default")
    vault.set("b", CANARY + "-b2", "default")
    rotation = vault.rotate_kek()
    assert rotation.kek_version == 2
    assert rotation.rewrapped == 3
    assert vault.kek_usage() == {2: 3}
    assert vault.reveal("a", "default") == CANARY + "-a"
    assert vault.reveal("b", "default") == CANARY + "-b2"
    assert vault.metadata("a", "default").kek_version == 2
    vault.retire_kek(1)
    assert provider.versions() == [2]
    assert vault.reveal("a", "default") == CANARY + "-a"


def test_old_versions_read_until_retired_and_retire_refuses_while_in_use(
    vault: Vault, provider: KeyProvider
) -> None:
    """After a bare KEK rotation old data keys still open; retiring their KEK is refused."""
    vault.set("a", CANARY, "default")
    provider.rotate()
    vault.set("b", CANARY + "-b", "default")
    assert vault.kek_usage() == {1: 1, 2: 1}
    assert vault.reveal("a", "default") == CANARY
    with pytest.raises(ConflictError, match="still wraps 1"):
        vault.retire_kek(1)
    assert provider.versions() == [1, 2]
    assert vault.rewrap_all() == 1
    vault.retire_kek(1)
    assert vault.reveal("a", "default") == CANARY
    assert vault.reveal("b", "default") == CANARY + "-b"


def test_delete_destroys_the_ciphertext(vault: Vault, store: Store) -> None:
    """A deleted secret is gone with every version; setting it again starts it anew."""
    vault.set("a", CANARY, "default")
    vault.set("a", CANARY + "-2", "default")
    assert vault.delete("a", "default").version == 2
    with store.session(read_only=True) as session:
        assert session.scalars(select(SecretVersionRow)).all() == []
    with pytest.raises(NotFoundError):
        vault.reveal("a", "default")
    with pytest.raises(NotFoundError):
        vault.delete("a", "default")
    assert vault.list() == []
    meta, created = vault.set("a", "new", "default")
    assert created
    assert meta.version == 3
    assert vault.reveal("a", "default") == "new"


@pytest.mark.parametrize(
    ("name", "value", "folder"),
    [
        ("bad name", "v", "default"),
        ("ok", "", "default"),
        ("ok", "v", "../etc"),
        ("ok", "\ud800", "default"),
    ],
)
def test_invalid_names_values_and_folders_are_refused(
    vault: Vault, name: str, value: str, folder: str | None
) -> None:
    """Names, folders and empty values outside the contract are a validation error."""
    with pytest.raises(ValidationFailedError):
        vault.set(name, value, folder)


def test_a_sealed_vault_fails_closed_and_logs_nothing(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without key material reveal and set raise VaultSealedError; metadata still works."""
    caplog.set_level(logging.DEBUG)
    open_vault = Vault(store, KeyFileProvider(tmp_path / "kek.json"))
    open_vault.set("a", CANARY, "default")
    sealed = Vault(store, None)
    assert sealed.sealed
    assert not open_vault.sealed
    with pytest.raises(VaultSealedError) as caught:
        sealed.reveal("a", "default")
    assert CANARY not in str(caught.value)
    with pytest.raises(VaultSealedError):
        sealed.set("b", CANARY, "default")
    with pytest.raises(VaultSealedError):
        sealed.rotate_kek()
    assert [m.name for m in sealed.list()] == ["a"]
    assert CANARY not in caplog.text


def test_bindings_come_from_the_vault_and_the_environment(
    vault: Vault, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bound_names sees a folder's vault secrets and env-bound ones; deleted ones vanish."""
    vault.set("in.vault", CANARY, "default")
    vault.set("elsewhere", CANARY, "finance")
    monkeypatch.setenv("AMOS_SECRET_IN_ENV", "x")
    names = ["in.vault", "in.env", "nowhere", "elsewhere"]
    assert vault_package.bound_names(names, "default", store=store) == {"in.vault", "in.env"}
    vault.delete("in.vault", "default")
    assert vault_package.bound_names(names, "default", store=store) == {"in.env"}


def _run_in(store: Store, run_id: str, folder: str) -> str:
    """Record a run of ``folder`` so a resolver can tell which folder it belongs to."""
    with store.session() as session:
        run_store.record_run(
            session,
            run_store.RunRecord(
                run_id=run_id,
                flow_name="f",
                flow_version="v",
                flow_hash="h",
                config_hash="c",
                status="running",
                trigger="manual",
                folder=folder,
                inputs={},
            ),
        )
    return run_id


def test_the_worker_resolver_reads_the_run_folders_vault_then_the_environment(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resolver reads the vault of the run's folder, falls back to env, fails closed sealed."""
    from amosflow.store import open_store
    from amosflow.vault import open_vault

    home = tmp_path / "home"
    resolver = vault_package.VaultResolver(home, audit.record_secret_read, store_url)
    monkeypatch.setenv("AMOS_SECRET_ONLY_ENV", "from-env")
    assert resolver("only.env", "r-1") == "from-env"  # no vault in this home yet
    writer_store = open_store(store_url)
    try:
        run = _run_in(writer_store, "r-1", "default")
        other = _run_in(writer_store, "r-2", "finance")
        open_vault(writer_store, home).set("only.vault", CANARY, "default")
        assert resolver("only.vault", run) == CANARY
        assert resolver("only.vault", f"{run}/child/0") == CANARY  # a `call` step's child run
        assert resolver("only.env", run) == "from-env"
        with pytest.raises(ActionError, match="not bound"):
            resolver("only.vault", other)  # another folder's run finds nothing
        with pytest.raises(ActionError, match="not bound"):
            resolver("only.vault", "not-a-run")  # a run outside the node: env only
        with pytest.raises(ActionError, match="not bound"):
            resolver("nowhere", run)
        monkeypatch.setenv("AMOS_VAULT_PROVIDER", "pkcs11")
        monkeypatch.setenv("AMOS_VAULT_PKCS11_MODULE", str(tmp_path / "no-such-module.so"))
        sealed = vault_package.VaultResolver(home, audit.record_secret_read, store_url)
        with pytest.raises(ActionError, match="sealed") as caught:
            sealed("only.vault", run)
        assert caught.value.type == "VaultSealed"
        assert caught.value.retryable
        assert sealed("only.env", run) == "from-env"
    finally:
        writer_store.dispose()


def test_every_vault_read_by_a_worker_is_audited_without_the_value(
    store_url: str, tmp_path: Path
) -> None:
    from amosflow import audit
    from amosflow.store import open_store
    from amosflow.vault import open_vault

    home = tmp_path / "home"
    writer_store = open_store(store_url)
    try:
        run = _run_in(writer_store, "r-fin", "finance")
        open_vault(writer_store, home).set("erp.token", CANARY, "finance")
        assert (
            vault_package.VaultResolver(home, audit.record_secret_read, store_url)("erp.token", run)
            == CANARY
        )
        with writer_store.session() as session:
            records = audit.query(session, action="secrets.read").items
        assert [(r.resource, r.folder, r.actor) for r in records] == [
            ("secrets/erp.token", "finance", "engine:worker")
        ]
        assert records[0].details["run_id"] == run
        assert CANARY not in str(records)
    finally:
        writer_store.dispose()
