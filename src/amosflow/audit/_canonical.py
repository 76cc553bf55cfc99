"""The bytes a record's hash covers: RFC 8785 canonical JSON, with a fast path for common values.

``rfc8785`` is the reference; it is pure Python and costs ~20 µs a record, too slow to verify
millions of records. Values made only of strings, safe integers, booleans, nulls, lists and
ASCII-keyed objects serialise identically through the C ``json`` encoder, so only the rest
(floats, non-ASCII keys, integers beyond 2**53) take the reference path.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from amosflow.dsl import canonical_json

#: ``prev_hash`` of the first record.
GENESIS = "0" * 64
_SAFE_INT = 2**53 - 1
_encode_str = json.encoder.encode_basestring
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _plain(value: Any) -> bool:
    """Tell whether the C encoder's output for ``value`` already is RFC 8785."""
    kind = type(value)
    if kind is int:
        return bool(-_SAFE_INT <= value <= _SAFE_INT)
    if kind is dict:
        # A plain loop: this runs for every record a verify walks, and all() over a generator
        # is measurably slower.
        for key, item in value.items():
            if type(key) is not str or not key.isascii() or not _plain(item):
                return False
        return True
    if kind is list or kind is tuple:
        return all(_plain(item) for item in value)
    return kind is str or kind is bool or value is None


def _as_number(value: Any) -> Any:
    """Turn integers beyond 2**53 into the double an I-JSON reader would see.

    PostgreSQL's JSONB hands an integral float such as 1e20 back as an integer; converting it
    again gives the same number and so the same canonical form as when it was written.
    """
    kind = type(value)
    if kind is int and not -_SAFE_INT <= value <= _SAFE_INT:
        return float(value)
    if kind is dict:
        return {k: _as_number(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_as_number(item) for item in value]
    return value


def canonical_value(value: Any) -> str:
    """Serialise a JSON value as RFC 8785 text; raises ValueError or TypeError if it cannot."""
    if _plain(value):
        return _encoder.encode(value)
    return canonical_json(_as_number(value)).decode()


def stamp(at: datetime) -> str:
    """Render a timestamp the one way the chain hashes it: UTC, microseconds, ``Z``."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    return at.isoformat(timespec="microseconds")[:-6] + "Z"  # drop "+00:00"


def record_bytes(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    resource: str,
    folder: str,
    outcome: str,
    details: Any,
    prev_hash: str,
) -> bytes:
    """Return the canonical JSON of every field of a record except ``hash``."""
    # Keys written in RFC 8785 order (sorted by UTF-16 code units; all ASCII here).
    text = (
        f'{{"action":{_encode_str(action)},"actor":{_encode_str(actor)},'
        f'"at":"{stamp(at)}","details":{canonical_value(details)},'
        f'"folder":{_encode_str(folder)},"outcome":{_encode_str(outcome)},'
        f'"prev_hash":{_encode_str(prev_hash)},"resource":{_encode_str(resource)},'
        f'"seq":{int(seq)}}}'
    )
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate: let the reference implementation decide (it refuses).
        return canonical_json(
            {
                "action": action, "actor": actor, "at": stamp(at), "details": _as_number(details),
                "folder": folder, "outcome": outcome, "prev_hash": prev_hash,
                "resource": resource, "seq": seq,
            }
        )  # fmt: skip


def record_hash(**fields: Any) -> str:
    """Return the SHA-256 hex digest of ``record_bytes(**fields)``."""
    return hashlib.sha256(record_bytes(**fields)).hexdigest()
