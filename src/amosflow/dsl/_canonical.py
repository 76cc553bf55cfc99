"""Canonical JSON (RFC 8785) and content hashes of documents."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785
from pydantic import BaseModel

__all__ = ["canonical_json", "content_hash"]


def canonical_json(value: Any) -> bytes:
    """Serialise a JSON value as RFC 8785 canonical JSON; raises ValueError if it cannot."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", by_alias=True, exclude_none=True)
    result: bytes = rfc8785.dumps(value)
    return result


def content_hash(document: Any) -> str:
    """Return ``sha256:`` and the hex digest of the document's canonical JSON."""
    return "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()
