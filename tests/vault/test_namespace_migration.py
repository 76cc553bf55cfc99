"""Migration 0009 keys secrets by folder: what an older install stored still decrypts after."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, text

from amosflow.store import alembic_config, open_store
from amosflow.vault import KeyFileProvider, Vault, seal
from tests.store.conftest import store_url  # noqa: F401 - the SQLite and PostgreSQL URLs
from tests.vault.conftest import CANARY


def test_secrets_stored_before_folders_were_namespaces_still_decrypt(
    store_url: str,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    """A database at 0008 with two secrets migrates to head; each reads in its own folder."""
    provider = KeyFileProvider(tmp_path / "kek.json", create=True)
    engine = create_engine(store_url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0008")
        now = datetime.now(UTC)
        for name, folder in (("erp.token", "finance"), ("mail.key", "default")):
            sealed = seal(provider, name, 1, folder, f"{CANARY}-{name}")
            connection.execute(
                text(
                    "INSERT INTO secrets (name, folder, current_version, created_at, updated_at,"
                    " deleted) VALUES (:name, :folder, 1, :now, :now, :deleted)"
                ),
                {"name": name, "folder": folder, "now": now, "deleted": False},
            )
            connection.execute(
                text(
                    "INSERT INTO secret_versions (name, version, ciphertext, nonce, wrapped_key,"
                    " kek_id, kek_version, created_at) VALUES (:name, 1, :c, :n, :w, :k, :v, :now)"
                ),
                {
                    "name": name,
                    "c": sealed.ciphertext,
                    "n": sealed.nonce,
                    "w": sealed.wrapped_key,
                    "k": sealed.kek_id,
                    "v": sealed.kek_version,
                    "now": now,
                },
            )
    engine.dispose()
    store = open_store(store_url)  # migrates to head
    try:
        vault = Vault(store, provider)
        assert vault.reveal("erp.token", "finance") == f"{CANARY}-erp.token"
        assert vault.reveal("mail.key", "default") == f"{CANARY}-mail.key"
        assert vault.holders("erp.token") == ["finance"]
        vault.set("erp.token", "default's own", "default")
        assert vault.reveal("erp.token", "finance") == f"{CANARY}-erp.token"
        assert vault.metadata("erp.token", "finance").version == 1
    finally:
        store.dispose()
