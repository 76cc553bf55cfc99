"""The embedded default key provider: a versioned key ring in ``<home>/vault/kek.json`` (0600)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from amosflow.errors import VaultError, VaultSealedError
from amosflow.host import exposure, write_private

if TYPE_CHECKING:
    from pathlib import Path

FORMAT = "amos.vault.kek/v1"
_NONCE_BYTES = 12


def _check_private(path: Path) -> None:
    problem = exposure(path)
    if problem is not None:
        raise VaultError(f"refusing the key file {path}: {problem}")


def _write_private(path: Path, content: bytes, *, exclusive: bool) -> None:
    write_private(path, content, exclusive=exclusive)


def _new_key(version: int) -> dict[str, Any]:
    return {
        "version": version,
        "key": base64.b64encode(AESGCM.generate_key(bit_length=256)).decode(),
        "created_at": datetime.now(UTC).isoformat(),
    }


class KeyFileProvider:
    """AES-256-GCM key wrapping with KEKs kept in a private JSON file, one per version.

    ``create=False`` (the worker) never writes the file; a missing file means sealed.
    """

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        self._writable = create
        self._lock = threading.Lock()
        if not path.exists():
            if not create:
                raise VaultSealedError(f"no key material: the key file {path} does not exist")
            ring = {"format": FORMAT, "kek_id": f"file:{secrets.token_hex(8)}", "current": 1}
            ring["keys"] = [_new_key(1)]
            _write_private(path, json.dumps(ring, indent=2).encode(), exclusive=True)
        self._ring = self._load()

    def _load(self) -> dict[str, Any]:
        _check_private(self.path)
        try:
            ring: Any = json.loads(self.path.read_bytes())
            valid = ring["format"] == FORMAT and isinstance(ring["keys"], list)
        except (ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            raise VaultError(f"the key file {self.path} is not an {FORMAT} key ring")
        loaded: dict[str, Any] = ring
        return loaded

    def _save(self) -> None:
        if not self._writable:
            raise VaultError(f"the key file {self.path} is open read-only here")
        _write_private(self.path, json.dumps(self._ring, indent=2).encode(), exclusive=False)

    def _key(self, version: int) -> bytes:
        for entry in self._ring["keys"]:
            if entry["version"] == version:
                return base64.b64decode(entry["key"])
        # Another process may have rotated since we read the file: look once more.
        with self._lock:
            self._ring = self._load()
        for entry in self._ring["keys"]:
            if entry["version"] == version:
                return base64.b64decode(entry["key"])
        raise VaultError(f"KEK version {version} of {self.kek_id!r} is retired or unknown")

    def _aad(self, version: int) -> bytes:
        return f"amos.vault.dek/v1|{self.kek_id}|{version}".encode()

    @property
    def kek_id(self) -> str:
        """The install's random key-ring id (``file:<hex>``)."""
        return str(self._ring["kek_id"])

    def wrap(self, plaintext_dek: bytes) -> tuple[int, bytes]:
        """Encrypt the data key with the current KEK (AES-256-GCM, nonce first)."""
        version = int(self._ring["current"])
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self._key(version)).encrypt(nonce, plaintext_dek, self._aad(version))
        return version, nonce + sealed

    def unwrap(self, kek_version: int, wrapped: bytes) -> bytes:
        """Decrypt a wrapped data key; a changed byte fails authentication."""
        key = self._key(kek_version)
        try:
            return AESGCM(key).decrypt(
                wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], self._aad(kek_version)
            )
        except (InvalidTag, ValueError):
            raise VaultError(
                f"a data key wrapped by KEK version {kek_version} failed authentication"
            ) from None

    def rotate(self) -> int:
        """Append a new random KEK version and make it current."""
        with self._lock:
            self._ring = self._load()
            version = max(int(e["version"]) for e in self._ring["keys"]) + 1
            self._ring["keys"].append(_new_key(version))
            self._ring["current"] = version
            self._save()
        return version

    def versions(self) -> list[int]:
        """Every KEK version still in the file."""
        with self._lock:
            self._ring = self._load()
        return sorted(int(e["version"]) for e in self._ring["keys"])

    def retire(self, version: int) -> None:
        """Remove KEK ``version`` from the file; the current version cannot be retired."""
        with self._lock:
            self._ring = self._load()
            if version == self._ring["current"]:
                raise VaultError(f"KEK version {version} is current and cannot be retired")
            kept = [e for e in self._ring["keys"] if e["version"] != version]
            if len(kept) == len(self._ring["keys"]):
                raise VaultError(f"KEK version {version} of {self.kek_id!r} does not exist")
            self._ring["keys"] = kept
            self._save()
