"""Where the vault's key material comes from (``AMOS_VAULT_*``), and opening a vault from it."""

from __future__ import annotations

import logging
from pathlib import Path  # noqa: TC003 - pydantic reads the annotations at run time
from typing import TYPE_CHECKING

from amosflow.config import VaultSettings
from amosflow.errors import VaultSealedError
from amosflow.vault._codec_keys import codec_keys_path
from amosflow.vault._service import Vault

if TYPE_CHECKING:
    from amosflow.store import Store
    from amosflow.vault._provider import KeyProvider

log = logging.getLogger(__name__)


def key_file_path(home: Path, settings: VaultSettings | None = None) -> Path:
    """The key file of an install: ``AMOS_VAULT_KEY_FILE`` or ``<home>/vault/kek.json``."""
    chosen = (settings or VaultSettings()).key_file
    return chosen or home / "vault" / "kek.json"


def is_configured(home: Path, settings: VaultSettings | None = None) -> bool:
    """Whether this install has a vault: an external provider, or an existing key file."""
    settings = settings or VaultSettings()
    return settings.provider != "file" or key_file_path(home, settings).exists()


def make_provider(home: Path, settings: VaultSettings, *, create: bool) -> KeyProvider:
    """Build the configured provider; ``create`` lets the key file be created on first start."""
    if settings.provider == "pkcs11":
        from amosflow.vault._pkcs11 import Pkcs11Provider  # noqa: PLC0415 - loads a native lib

        return Pkcs11Provider(
            settings.pkcs11_module,
            settings.pkcs11_token,
            settings.pkcs11_pin,
            label=settings.pkcs11_key_label,
        )
    if settings.provider == "transit":
        from amosflow.vault._transit import TransitProvider  # noqa: PLC0415

        if not settings.transit_url:
            raise VaultSealedError("AMOS_VAULT_TRANSIT_URL is not set")
        return TransitProvider(
            settings.transit_url,
            settings.transit_token,
            settings.transit_key,
            mount=settings.transit_mount,
        )
    from amosflow.vault._keyfile import KeyFileProvider  # noqa: PLC0415

    return KeyFileProvider(key_file_path(home, settings), create=create)


def open_vault(
    store: Store, home: Path, settings: VaultSettings | None = None, *, create: bool = True
) -> Vault:
    """The install's vault; it starts sealed when its key material is unavailable.

    Unsafe key material (a key file others can read) is an error, not a sealed vault.
    """
    try:
        provider = make_provider(home, settings or VaultSettings(), create=create)
    except VaultSealedError as err:
        log.warning("the vault starts sealed: %s", err)  # names the cause, never key bytes
        return Vault(store, None)
    return Vault(store, provider, codec_keys=codec_keys_path(home))
