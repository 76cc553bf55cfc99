"""Webhook authentication: HMAC-SHA256 over timestamp and body, a replay window, a rate limit."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Amos-Signature"
TIMESTAMP_HEADER = "X-Amos-Timestamp"
DELIVERY_HEADER = "X-Amos-Delivery"
SCHEME = "sha256="


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    """The signature a sender puts in X-Amos-Signature: sha256=HEX of `timestamp.body`."""
    mac = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256)
    return SCHEME + mac.hexdigest()


def verify(
    key: bytes, timestamp: str, body: bytes, signature: str, *, window_s: int, now: float
) -> str | None:
    """Return why a delivery is not authentic, or None when it is."""
    try:
        sent = int(timestamp)
    except ValueError:
        return "timestamp is not a Unix time in seconds"
    if abs(now - sent) > window_s:
        return "timestamp outside the replay window"
    expected = sign(key, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return "signature does not match"
    return None
