"""Content-addressed artifact store: large values travel by reference, never inline in history.

A reference is ``{"$ref": "artifact://sha256/HEX", "sha256": HEX, "size": N}``; the file lives
at ``<root>/<HEX[:2]>/<HEX>`` and is written atomically, so a crash never leaves half a value.
Values are run data (often personal): files are 0600 and directories 0700 whatever the umask.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amosflow.errors import ArtifactError

SCHEME = "artifact://sha256/"


def is_ref(value: Any) -> bool:
    """Tell whether a value is an artifact reference."""
    return isinstance(value, dict) and str(value.get("$ref", "")).startswith(SCHEME)


@dataclass(frozen=True)
class ArtifactStore:
    """Files named by the SHA-256 of their content under one root directory."""

    root: Path

    def put(self, data: bytes) -> dict[str, Any]:
        """Store bytes (idempotently) and return their reference."""
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not path.exists():
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.parent.mkdir(mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # 0600
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                Path(tmp).replace(path)
            except OSError as err:
                Path(tmp).unlink(missing_ok=True)
                raise ArtifactError(f"cannot write artifact {digest}: {err}") from err
        return {"$ref": SCHEME + digest, "sha256": digest, "size": len(data)}

    def get(self, ref: dict[str, Any]) -> bytes:
        """Read the bytes a reference names and check their digest."""
        if not is_ref(ref):
            raise ArtifactError(f"not an artifact reference: {ref!r}")
        digest = str(ref["$ref"]).removeprefix(SCHEME)
        try:
            data = self._path(digest).read_bytes()
        except OSError as err:
            raise ArtifactError(f"artifact {digest} is missing") from err
        if hashlib.sha256(data).hexdigest() != digest:
            raise ArtifactError(f"artifact {digest} is corrupt")
        return data

    def put_json(self, value: Any) -> dict[str, Any]:
        """Store a JSON value and return its reference."""
        return self.put(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())

    def get_json(self, ref: dict[str, Any]) -> Any:
        """Load a JSON value stored with ``put_json``."""
        return json.loads(self.get(ref))

    def _path(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):  # noqa: PLR2004
            raise ArtifactError(f"bad artifact digest {digest!r}")
        return self.root / digest[:2] / digest
