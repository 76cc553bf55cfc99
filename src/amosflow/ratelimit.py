"""Token buckets keyed by a name (a hook, a client address, an account): slow down, never block."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """A rate limit: `rate` tokens a second, at most `burst` saved up."""

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
    """One bucket per key, created on first use and replaced when the key's limits change."""

    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key: str, rate: float, burst: int) -> float:
        """Take a token from the key's bucket; 0 when granted, else seconds to wait."""
        with self.lock:
            bucket = self.buckets.get(key)
            if bucket is None or bucket.rate != rate or bucket.burst != burst:
                bucket = self.buckets[key] = TokenBucket(rate, burst)
        return bucket.take()
