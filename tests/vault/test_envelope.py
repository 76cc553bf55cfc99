"""Envelope encryption: round trip, and every altered byte is refused with a clear error."""

from __future__ import annotations

import dataclasses

import pytest

from amosflow.errors import VaultError
from amosflow.vault import Envelope, KeyProvider, associated_data, open_envelope, seal
from tests.vault.conftest import CANARY


def _flip(data: bytes, index: int = 0) -> bytes:
    changed = bytearray(data)
    changed[index] ^= 0x01
    return bytes(changed)


def test_round_trip(provider: KeyProvider) -> None:
    """A sealed value opens to the same text, and the ciphertext does not contain it."""
    sealed = seal(provider, "erp.token", 1, "default", CANARY)
    assert CANARY.encode() not in sealed.ciphertext + sealed.wrapped_key
    assert len(sealed.nonce) == 12
    assert sealed.kek_id == provider.kek_id
    assert open_envelope(provider, sealed, "erp.token", 1, "default") == CANARY


def test_every_version_gets_its_own_data_key_and_nonce(provider: KeyProvider) -> None:
    """Two seals of the same value share neither nonce, wrapped key nor ciphertext."""
    one = seal(provider, "a", 1, "default", CANARY)
    two = seal(provider, "a", 1, "default", CANARY)
    assert one.nonce != two.nonce
    assert one.wrapped_key != two.wrapped_key
    assert one.ciphertext != two.ciphertext


@pytest.mark.parametrize("part", ["ciphertext", "wrapped_key", "nonce"])
def test_one_flipped_byte_fails_with_a_clear_error(provider: KeyProvider, part: str) -> None:
    """Changing one byte of ciphertext, wrapped key or nonce raises VaultError without plaintext."""
    sealed = seal(provider, "erp.token", 1, "default", CANARY)
    for index in (0, len(getattr(sealed, part)) - 1):
        tampered: Envelope = dataclasses.replace(
            sealed, **{part: _flip(getattr(sealed, part), index)}
        )
        with pytest.raises(VaultError) as caught:
            open_envelope(provider, tampered, "erp.token", 1, "default")
        assert CANARY not in str(caught.value)
        assert "erp.token" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "version", "folder"),
    [("erp.tokeN", 1, "default"), ("erp.token", 2, "default"), ("erp.token", 1, "finance")],
)
def test_altered_associated_data_fails(
    provider: KeyProvider, name: str, version: int, folder: str
) -> None:
    """Opening under another name, version or folder (a changed AAD byte) raises VaultError."""
    sealed = seal(provider, "erp.token", 1, "default", CANARY)
    with pytest.raises(VaultError, match="failed authentication") as caught:
        open_envelope(provider, sealed, name, version, folder)
    assert CANARY not in str(caught.value)


def test_associated_data_is_unambiguous() -> None:
    """Length prefixes keep ("a.b", "c") and ("a", "b.c")-style splits apart."""
    assert associated_data("ab", 1, "c") != associated_data("a", 1, "bc")
    assert associated_data("a", 11, "b") != associated_data("a", 1, "1b")
