"""The credential vault: envelope encryption of secrets under a versioned key ring.

Each secret version is AES-256-GCM encrypted under its own data key, with associated data
binding name, version and folder; data keys are wrapped by a key provider (key file, PKCS#11
HSM or a transit-compatible KMS). Only ciphertext is stored; see decision 0018.
"""

from __future__ import annotations

from amosflow.config import VaultSettings
from amosflow.vault._envelope import Envelope, associated_data, open_envelope, seal
from amosflow.vault._keyfile import KeyFileProvider
from amosflow.vault._provider import KeyProvider
from amosflow.vault._resolver import ReadRecorder, Resolver, VaultResolver, bound_names
from amosflow.vault._service import (
    FOLDER_PATTERN,
    NAME_PATTERN,
    Rotation,
    SecretMetadata,
    Vault,
)
from amosflow.vault._settings import is_configured, key_file_path, make_provider, open_vault

__all__ = [
    "FOLDER_PATTERN",
    "NAME_PATTERN",
    "Envelope",
    "KeyFileProvider",
    "KeyProvider",
    "ReadRecorder",
    "Resolver",
    "Rotation",
    "SecretMetadata",
    "Vault",
    "VaultResolver",
    "VaultSettings",
    "associated_data",
    "bound_names",
    "is_configured",
    "key_file_path",
    "make_provider",
    "open_envelope",
    "open_vault",
    "seal",
]
