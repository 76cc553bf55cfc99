"""Token buckets keyed by a name (a hook, a client address, an account): slow down, never block.

The table of buckets is bounded (``MAX_KEYS``), because its keys come from callers: a flood
of new addresses must not grow memory without end. Forgetting a key would hand it a fresh,
full bucket on its next attempt, so the table only ever drops buckets that have refilled
completely, which a fresh one cannot tell apart from; least recently used first. While every
bucket in a full table is still draining, keys that do not fit share one overflow bucket:
a flood of new keys gets one key's worth of attempts between them, and a new caller arriving
in the middle of such a flood is slowed with it. That is the trade (ADR 0049): bounded
memory and no reset by eviction, at the price of throttling strangers during a flood.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable  # noqa: TC003 - a dataclass field type
from dataclasses import dataclass, field

#: Buckets one table keeps at most (about 300 bytes each).
MAX_KEYS = 10_000


@dataclass
class TokenBucket:
    """A rate limit: `rate` tokens a second, at most `burst` saved up."""

    rate: float
    burst: int
    tokens: float = -1.0
    clock: Callable[[], float] = time.monotonic
    stamp: float = -1.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.stamp < 0:
            self.stamp = self.clock()

    def _refill(self, now: float) -> float:
        if self.tokens < 0:
            return float(self.burst)
        return min(self.burst, self.tokens + (now - self.stamp) * self.rate)

    def take(self) -> float:
        """Take a token; return 0 when granted, else the seconds until one is free."""
        with self.lock:
            now = self.clock()
            self.tokens = self._refill(now)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate

    def refilled(self) -> bool:
        """Whether the bucket is full again: as good as new, so forgetting it loses nothing."""
        with self.lock:
            return self._refill(self.clock()) >= self.burst


@dataclass
class RateLimits:
    """One bucket per key, at most ``max_keys`` of them; limits changing replace a key's bucket."""

    max_keys: int = MAX_KEYS
    clock: Callable[[], float] = time.monotonic
    buckets: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)
    overflow: dict[tuple[float, int], TokenBucket] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key: str, rate: float, burst: int) -> float:
        """Take a token from the key's bucket; 0 when granted, else seconds to wait."""
        with self.lock:
            bucket = self.buckets.get(key)
            if bucket is None or bucket.rate != rate or bucket.burst != burst:
                bucket = self._admit(key, rate, burst)
            else:
                self.buckets.move_to_end(key)
        return bucket.take()

    def _admit(self, key: str, rate: float, burst: int) -> TokenBucket:
        """A new bucket for ``key``, or the shared overflow bucket when the table is full."""
        self.buckets.pop(key, None)
        while len(self.buckets) >= self.max_keys:
            oldest_key, oldest = next(iter(self.buckets.items()))
            if not oldest.refilled():
                shared = self.overflow.get((rate, burst))
                if shared is None:
                    shared = self.overflow[rate, burst] = TokenBucket(rate, burst, clock=self.clock)
                return shared
            del self.buckets[oldest_key]
        bucket = self.buckets[key] = TokenBucket(rate, burst, clock=self.clock)
        return bucket
