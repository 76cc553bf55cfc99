"""Webhook authentication: HMAC-SHA256 over timestamp and body, a replay window, a rate limit."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass, field

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


@dataclass
class TokenBucket:
    """A per-hook rate limit: `rate` tokens a second, at most `burst` saved up."""

    rate: float
    burst: int
    tokens: float = -1.0
    stamp: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> float:
        """Take a token; return 0 when granted, else the seconds until one is free."""
        with self.lock:
            now = time.monotonic()
            if self.tokens < 0:
                self.tokens = float(self.burst)
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate


@dataclass
class RateLimits:
    """One bucket per hook, created on first use and replaced when the hook's limits change."""

    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, hook: str, rate: float, burst: int) -> float:
        """Take a token from the hook's bucket."""
        with self.lock:
            bucket = self.buckets.get(hook)
            if bucket is None or bucket.rate != rate or bucket.burst != burst:
                bucket = self.buckets[hook] = TokenBucket(rate, burst)
        return bucket.take()
