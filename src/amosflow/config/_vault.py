"""Where the vault's key material comes from: ``AMOS_VAULT_*``."""

from __future__ import annotations

from pathlib import Path  # noqa: TC003 - pydantic reads the annotations at run time
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class VaultSettings(BaseSettings):
    """The key provider of the vault and its parameters."""

    model_config = SettingsConfigDict(env_prefix="AMOS_VAULT_", extra="ignore")

    provider: Literal["file", "pkcs11", "transit"] = Field(
        default="file", description="Key provider: key file (default), PKCS#11 HSM or transit."
    )
    key_file: Path | None = Field(
        default=None, description="KEK file; unset uses <home>/vault/kek.json."
    )
    pkcs11_module: str = Field(
        default="/usr/lib/softhsm/libsofthsm2.so", description="PKCS#11 module (.so) path."
    )
    pkcs11_token: str = Field(default="amos", description="Label of the PKCS#11 token.")
    pkcs11_pin: str = Field(default="", description="User PIN of the PKCS#11 token.")
    pkcs11_key_label: str = Field(default="amos-kek", description="Label prefix of the KEKs.")
    transit_url: str = Field(default="", description="Base URL of a transit-compatible KMS.")
    transit_token: str = Field(default="", description="Token for the transit service.")
    transit_key: str = Field(default="amos", description="Name of the transit key.")
    transit_mount: str = Field(default="transit", description="Mount path of the transit engine.")
