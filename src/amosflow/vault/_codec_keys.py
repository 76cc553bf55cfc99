"""The payload codec's data keys: ``<home>/vault/codec.json``, each key wrapped by the vault's KEK.

The Temporal payload codec needs a key that every process of a node shares and that outlives
rotations, so old histories stay readable. Keeping the keys wrapped by the vault's key ring
means the codec has exactly the vault's key material: a sealed vault is a sealed codec, and
the file alone (or a copy of it) yields nothing.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from amosflow.errors import VaultError, VaultSealedError
from amosflow.host import exposure, write_private
from amosflow.vault._provider import DEK_BYTES

if TYPE_CHECKING:
    from pathlib import Path

    from amosflow.vault._provider import KeyProvider

FORMAT = "amos.codec.keys/v1"
KEY_ID_BYTES = 8


def codec_keys_path(home: Path) -> Path:
    """Where an install keeps its wrapped codec keys."""
    return home / "vault" / "codec.json"


class CodecKeyRing:
    """Versioned codec data keys, wrapped by ``provider``; unwrapped keys stay in memory only.

    Any process that holds the vault's key material may create the file (exclusively, so
    racing first starts keep one ring). The ring is re-read when a key id is unknown or the
    file changed, so a rotation made by another process is seen without a restart.
    """

    def __init__(self, path: Path, provider: KeyProvider) -> None:
        self.path = path
        self.provider = provider
        self._lock = threading.Lock()
        self._plain: dict[str, bytes] = {}
        self._ring: dict[str, Any] = {}
        self._stamp: tuple[int, int] = (-1, -1)
        with self._lock:
            self._refresh(create=True)

    # -- file ---------------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        problem = exposure(self.path)
        if problem is not None:
            raise VaultError(f"refusing the codec key file {self.path}: {problem}")
        try:
            ring: Any = json.loads(self.path.read_bytes())
            valid = ring["format"] == FORMAT and isinstance(ring["keys"], list)
        except (ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            raise VaultError(f"the codec key file {self.path} is not an {FORMAT} key ring")
        if ring["kek_id"] != self.provider.kek_id:
            raise VaultError(
                f"the codec keys in {self.path} are wrapped by key ring {ring['kek_id']!r}, "
                f"but this vault holds {self.provider.kek_id!r}"
            )
        loaded: dict[str, Any] = ring
        return loaded

    def _write(self, ring: dict[str, Any], *, exclusive: bool) -> None:
        write_private(self.path, json.dumps(ring, indent=2).encode(), exclusive=exclusive)

    def _entry(self) -> dict[str, Any]:
        dek = secrets.token_bytes(DEK_BYTES)
        kek_version, wrapped = self.provider.wrap(dek)
        return {
            "id": secrets.token_hex(KEY_ID_BYTES),
            "kek_version": kek_version,
            "wrapped": base64.b64encode(wrapped).decode(),
            "created_at": datetime.now(UTC).isoformat(),
        }

    def _refresh(self, *, create: bool = False) -> None:
        """Re-read the file when it changed since we last did (caller holds the lock)."""
        if not self.path.exists():
            if not create:
                raise VaultSealedError(f"the codec key file {self.path} has disappeared")
            entry = self._entry()
            ring = {"format": FORMAT, "kek_id": self.provider.kek_id, "current": entry["id"]}
            ring["keys"] = [entry]
            self._write(ring, exclusive=True)  # a racing first start wins; we read its ring
        info = self.path.stat()
        stamp = (info.st_ino, info.st_mtime_ns)  # every write replaces the file
        if stamp != self._stamp:
            self._ring, self._stamp = self._read(), stamp

    def _unwrap(self, entry: dict[str, Any]) -> bytes:
        key_id = str(entry["id"])
        if key_id not in self._plain:
            try:
                dek = self.provider.unwrap(
                    int(entry["kek_version"]), base64.b64decode(entry["wrapped"])
                )
            except VaultSealedError:
                raise
            except VaultError as err:
                raise VaultError(f"codec key {key_id}: {err}") from None
            if len(dek) != DEK_BYTES:
                raise VaultError(f"codec key {key_id} is malformed")
            self._plain[key_id] = dek
        return self._plain[key_id]

    # -- use ----------------------------------------------------------------------------

    def current(self) -> tuple[str, bytes]:
        """The id and bytes of the key new payloads are encrypted with."""
        with self._lock:
            self._refresh()
            key_id = str(self._ring["current"])
            return key_id, self._key_locked(key_id)

    def key(self, key_id: str) -> bytes:
        """The bytes of codec key ``key_id``; an unknown id is a clear ``VaultError``."""
        with self._lock:
            if key_id in self._plain:
                return self._plain[key_id]
            self._refresh()
            return self._key_locked(key_id)

    def _key_locked(self, key_id: str) -> bytes:
        for entry in self._ring["keys"]:
            if entry["id"] == key_id:
                return self._unwrap(entry)
        raise VaultError(
            f"codec key {key_id!r} is not in {self.path}: it was removed or never ours"
        )

    def ids(self) -> list[str]:
        """Every codec key id, oldest first."""
        with self._lock:
            self._refresh()
            return [str(entry["id"]) for entry in self._ring["keys"]]

    def rotate(self) -> str:
        """Add a codec key and make it current; older keys stay, so old payloads still open."""
        with self._lock:
            self._refresh()
            entry = self._entry()
            ring = {**self._ring, "keys": [*self._ring["keys"], entry], "current": entry["id"]}
            self._write(ring, exclusive=False)
            self._refresh()
            return str(entry["id"])

    def rewrap(self) -> int:
        """Re-wrap every codec key not under the current KEK; return how many moved."""
        with self._lock:
            self._refresh()
            newest = self.provider.versions()[-1]
            keys, moved = [], 0
            for entry in self._ring["keys"]:
                if int(entry["kek_version"]) == newest:
                    keys.append(entry)
                    continue
                version, wrapped = self.provider.wrap(self._unwrap(entry))
                wrapped_text = base64.b64encode(wrapped).decode()
                keys.append({**entry, "kek_version": version, "wrapped": wrapped_text})
                moved += 1
            if moved:
                self._write({**self._ring, "keys": keys}, exclusive=False)
                self._refresh()
            return moved

    def kek_usage(self) -> dict[int, int]:
        """How many codec keys each KEK version wraps."""
        with self._lock:
            self._refresh()
            usage: dict[int, int] = {}
            for entry in self._ring["keys"]:
                version = int(entry["kek_version"])
                usage[version] = usage.get(version, 0) + 1
            return usage
