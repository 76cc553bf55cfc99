"""The one interface every key-encryption-key provider implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

DEK_BYTES = 32  # AES-256 data keys


@runtime_checkable
class KeyProvider(Protocol):
    """A versioned key ring of key-encryption keys (KEKs) that wraps and unwraps data keys.

    Key bytes of a KEK never leave the provider; only wrapped data keys do.
    """

    @property
    def kek_id(self) -> str:
        """Stable name of this key ring, recorded with every data key it wraps."""
        ...

    def wrap(self, plaintext_dek: bytes) -> tuple[int, bytes]:
        """Wrap a data key with the current KEK; return that KEK's version and the wrapped key."""
        ...

    def unwrap(self, kek_version: int, wrapped: bytes) -> bytes:
        """Unwrap a data key wrapped by KEK ``kek_version``; tampering raises ``VaultError``."""
        ...

    def rotate(self) -> int:
        """Add a new KEK version, make it current and return its number."""
        ...

    def versions(self) -> list[int]:
        """The KEK versions this provider can still unwrap with, oldest first."""
        ...

    def retire(self, version: int) -> None:
        """Destroy KEK ``version`` (never the current one); nothing it wrapped opens again."""
        ...
