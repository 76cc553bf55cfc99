"""Per-install key files: the Ed25519 checkpoint key pair and the HMAC fingerprint key.

Keys are generated on first use, never shipped; a private key file that anyone but its owner
can read is refused, because whoever reads it can forge checkpoints.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from amosflow.errors import AuditError
from amosflow.host import exposure, write_private

if TYPE_CHECKING:
    from pathlib import Path


def _check_private(path: Path) -> None:
    problem = exposure(path)
    if problem is not None:
        raise AuditError(f"refusing {path}: {problem}")


def _create_private(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` with mode 0600 unless another process got there first."""
    write_private(path, content, exclusive=True)


def _read_private(path: Path, create: bytes | None) -> bytes:
    try:
        if not path.exists():
            if create is None:
                raise AuditError(f"the key file {path} does not exist")
            _create_private(path, create)
        _check_private(path)
        return path.read_bytes()
    except OSError as exc:
        # Most often: run as a user that is not the key's (the API's, under a root node).
        raise AuditError(f"cannot read the key file {path}: {exc.strerror}") from exc


def key_id(public_key: Ed25519PublicKey) -> str:
    """Name a public key by the first 16 hex digits of the SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class CheckpointSigner:
    """Signs checkpoints with the install's Ed25519 private key, which never enters the store."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def from_file(cls, path: Path, *, create: bool = True) -> CheckpointSigner:
        """Load the key at ``path`` (creating it, mode 0600, if allowed) and publish ``.pub``.

        Raises AuditError when the file is missing and ``create`` is false, is not an Ed25519
        PEM key, or is readable by group or others.
        """
        fresh = None
        if create:
            fresh = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        try:
            key = serialization.load_pem_private_key(_read_private(path, fresh), password=None)
        except ValueError as exc:
            raise AuditError(f"{path} is not a PEM private key: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise AuditError(f"{path} is not an Ed25519 key")
        owner = path.stat().st_uid
        if owner != os.geteuid():
            # A key someone else owns is one they could have planted or can read (ADR 0049).
            raise AuditError(
                f"refusing {path}: it belongs to uid {owner}, not to uid {os.geteuid()} that "
                "signs with it"
            )
        signer = cls(key)
        _publish(public_key_path(path), _public_pem(signer.public_key))
        return signer

    def sign(self, payload: bytes) -> str:
        """Return the base64 Ed25519 signature of ``payload``."""
        return base64.b64encode(self._private_key.sign(payload)).decode()


def _publish(path: Path, pem: bytes) -> None:
    """Write the public key; a new file is 0600, an existing one keeps its mode and group."""
    if path.exists():
        if path.read_bytes() != pem:
            path.write_bytes(pem)
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another first start published the same key
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


def public_key_path(private_key_path: Path) -> Path:
    """Where the public half of ``private_key_path`` is published (``.key`` → ``.pub``)."""
    return private_key_path.with_suffix(".pub")


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a PEM Ed25519 public key; raises AuditError when the file is missing or not one."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise AuditError(f"cannot read the checkpoint public key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(f"{path} is not an Ed25519 public key")
    return key


def signature_valid(public_key: Ed25519PublicKey, payload: bytes, signature: str) -> bool:
    """Tell whether ``signature`` (base64) is the key's signature of ``payload``."""
    try:
        public_key.verify(base64.b64decode(signature, validate=True), payload)
    except (InvalidSignature, ValueError):
        return False
    return True


def load_fingerprint_key(path: Path, *, create: bool = True) -> bytes:
    """Return the install's 32-byte HMAC key for ``fingerprint``, creating it (0600) if allowed."""
    fresh = secrets.token_bytes(32).hex().encode() if create else None
    raw = _read_private(path, fresh).strip()
    try:
        key = bytes.fromhex(raw.decode())
    except ValueError as exc:
        raise AuditError(f"{path} does not hold a hex key") from exc
    if len(key) < 32:  # noqa: PLR2004 - the HMAC-SHA256 block-size guidance
        raise AuditError(f"{path} holds a key shorter than 32 bytes")
    return key
