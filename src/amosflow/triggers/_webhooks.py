"""Webhook authentication: HMAC-SHA256 over timestamp, delivery id and body, in a replay window.

The delivery id names the run a delivery starts, so it is signed too: a captured delivery
replayed under a new id is refused, and one replayed under its own id joins the run it
already started.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Amos-Signature"
TIMESTAMP_HEADER = "X-Amos-Timestamp"
DELIVERY_HEADER = "X-Amos-Delivery"
SCHEME = "v2="


def signed_content(timestamp: str, delivery: str, body: bytes) -> bytes:
    """What the signature covers: ``timestamp.delivery.body``."""
    return timestamp.encode() + b"." + delivery.encode() + b"." + body


def sign(key: bytes, timestamp: str, delivery: str, body: bytes) -> str:
    """The signature a sender puts in X-Amos-Signature: ``v2=HEX``."""
    mac = hmac.new(key, signed_content(timestamp, delivery, body), hashlib.sha256)
    return SCHEME + mac.hexdigest()


def verify(
    key: bytes,
    timestamp: str,
    delivery: str,
    body: bytes,
    signature: str,
    *,
    window_s: int,
    now: float,
) -> str | None:
    """Return why a delivery is not authentic, or None when it is.

    The reason is for the node's log only: every refusal answers the sender alike.
    """
    expected = sign(key, timestamp, delivery, body)
    matches = hmac.compare_digest(expected.encode(), signature.encode())
    try:
        sent = int(timestamp)
    except ValueError:
        return "timestamp is not a Unix time in seconds"
    if abs(now - sent) > window_s:
        return "timestamp outside the replay window"
    return None if matches else "signature does not match"
