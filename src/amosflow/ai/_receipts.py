"""Tool receipts: the gateway's signed statement that one tool call happened, with its hashes.

The agent harness trusts a tool result only when it carries a receipt that this install's
gateway signed for this step, and whose hashes match the arguments and the result the agent
reports. An agent (or a model) that invents a tool result cannot produce one.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from amosflow.dsl import canonical_json
from amosflow.errors import McpError, ReceiptError
from amosflow.host import exposure, write_private

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Receipt", "ReceiptSigner", "receipt_key_path", "sha256_of"]


def receipt_key_path(home: Path) -> Path:
    """Where an install keeps the gateway's receipt key: ``<home>/ai/receipts.key``."""
    return home / "ai" / "receipts.key"


def sha256_of(value: Any) -> str:
    """``sha256:`` and the hex digest of a JSON value's RFC 8785 canonical form."""
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()


@dataclass(frozen=True, slots=True)
class Receipt:
    """One tool call as the gateway saw it; ``signature`` covers every other field."""

    call_id: str
    tool: str
    scope: str
    arguments_sha256: str
    result_sha256: str
    key_id: str
    signature: str = ""

    def payload(self) -> bytes:
        """The canonical bytes the signature is over."""
        fields = asdict(self)
        fields.pop("signature")
        return canonical_json(fields)

    def to_json(self) -> dict[str, str]:
        """The receipt as a JSON object, as it appears in a step's output."""
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> Receipt:
        """Read a receipt back; anything that is not one is a ReceiptError."""
        names = {"call_id", "tool", "scope", "arguments_sha256", "result_sha256", "key_id"}
        if not isinstance(value, dict) or not all(
            isinstance(value.get(n), str) for n in (*names, "signature")
        ):
            raise ReceiptError("a tool result carries no well-formed receipt")
        return cls(**{n: value[n] for n in (*names, "signature")})


class ReceiptSigner:
    """Issues and verifies receipts with the install's Ed25519 key (never in the store)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key: Ed25519PublicKey = private_key.public_key()
        raw = self.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = hashlib.sha256(raw).hexdigest()[:16]

    @classmethod
    def from_file(cls, path: Path) -> ReceiptSigner:
        """Load the key at ``path``, creating it (mode 0600) on first use; refuse an open one."""
        if not path.exists():
            fresh = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_private(path, fresh, exclusive=True)
        problem = exposure(path)
        if problem is not None:
            raise McpError(f"refusing the receipt key {path}: {problem}")
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except ValueError as err:
            raise McpError(f"{path} is not a PEM private key: {err}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise McpError(f"{path} is not an Ed25519 key")
        return cls(key)

    def issue(self, tool: str, scope: str, arguments: Any, result: Any) -> Receipt:
        """Sign a receipt for one completed call of ``tool`` in ``scope`` (a step attempt)."""
        unsigned = Receipt(
            call_id=uuid.uuid4().hex,
            tool=tool,
            scope=scope,
            arguments_sha256=sha256_of(arguments),
            result_sha256=sha256_of(result),
            key_id=self.key_id,
        )
        signature = base64.b64encode(self._private_key.sign(unsigned.payload())).decode()
        return Receipt(**{**unsigned.to_json(), "signature": signature})

    def verify(self, receipt: Receipt, *, scope: str, tool: str, result: Any) -> None:
        """Raise ReceiptError unless ``receipt`` is ours, for this scope and tool, and ``result``.

        The signature proves the gateway issued it; the scope that it was issued for this
        step, not replayed from another; the hash that the result is the one the tool gave.
        """
        if receipt.key_id != self.key_id:
            raise ReceiptError(f"receipt {receipt.call_id} was not signed by this gateway")
        try:
            signature = base64.b64decode(receipt.signature, validate=True)
            self.public_key.verify(signature, receipt.payload())
        except (InvalidSignature, ValueError):
            raise ReceiptError(f"receipt {receipt.call_id} has an invalid signature") from None
        if receipt.scope != scope:
            raise ReceiptError(f"receipt {receipt.call_id} belongs to another step")
        if receipt.tool != tool:
            raise ReceiptError(f"receipt {receipt.call_id} is for {receipt.tool}, not {tool}")
        if receipt.result_sha256 != sha256_of(result):
            raise ReceiptError(
                f"the result reported for {tool} does not match receipt {receipt.call_id}"
            )
