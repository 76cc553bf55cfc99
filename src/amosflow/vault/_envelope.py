"""Envelope encryption of one secret version: a fresh AES-256-GCM data key, wrapped by a KEK."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from amosflow.errors import VaultError, VaultSealedError
from amosflow.vault._provider import DEK_BYTES

if TYPE_CHECKING:
    from amosflow.vault._provider import KeyProvider

NONCE_BYTES = 12
_AAD_LABEL = b"amos.vault.secret/v1"


@dataclass(frozen=True)
class Envelope:
    """What is kept at rest for one secret version: ciphertext and its wrapped data key."""

    ciphertext: bytes
    nonce: bytes
    wrapped_key: bytes
    kek_id: str
    kek_version: int


def associated_data(name: str, version: int, folder: str) -> bytes:
    """Canonical bytes binding a ciphertext to its secret name, version and folder.

    Each field is length-prefixed, so no two different triples encode to the same bytes.
    """
    parts = [_AAD_LABEL, name.encode(), str(version).encode(), folder.encode()]
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


def seal(provider: KeyProvider, name: str, version: int, folder: str, value: str) -> Envelope:
    """Encrypt ``value`` under a new random data key and wrap that key with the current KEK."""
    dek = AESGCM.generate_key(bit_length=DEK_BYTES * 8)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(dek).encrypt(nonce, value.encode(), associated_data(name, version, folder))
    kek_version, wrapped = provider.wrap(dek)
    return Envelope(ciphertext, nonce, wrapped, provider.kek_id, kek_version)


def open_envelope(
    provider: KeyProvider, envelope: Envelope, name: str, version: int, folder: str
) -> str:
    """Unwrap the data key and decrypt; any tampering raises ``VaultError`` (no secret bytes)."""
    where = f"secret {name!r} version {version}"
    if envelope.kek_id != provider.kek_id:
        raise VaultError(
            f"{where} is wrapped by key ring {envelope.kek_id!r}, "
            f"but this vault holds {provider.kek_id!r}"
        )
    try:
        dek = provider.unwrap(envelope.kek_version, envelope.wrapped_key)
    except VaultSealedError:
        raise
    except VaultError as err:
        raise VaultError(f"{where}: {err}") from None
    if len(dek) != DEK_BYTES or len(envelope.nonce) != NONCE_BYTES:
        raise VaultError(f"{where} cannot be decrypted: its data key or nonce is malformed")
    try:
        plaintext = AESGCM(dek).decrypt(
            envelope.nonce, envelope.ciphertext, associated_data(name, version, folder)
        )
    except InvalidTag:
        raise VaultError(
            f"{where} failed authentication: its ciphertext, nonce, name, version or folder "
            "was altered"
        ) from None
    try:
        return plaintext.decode()
    except UnicodeDecodeError:
        raise VaultError(f"{where} does not decode as UTF-8 text") from None
