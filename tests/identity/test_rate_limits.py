"""The sign-in rate-limit table: bounded memory, and a flood of keys never resets a spent bucket."""

from __future__ import annotations

from dataclasses import dataclass

from amosflow.host import RateLimits

RATE, BURST = 10 / 60, 10


@dataclass
class Clock:
    """A clock the test moves by hand, so refills happen exactly when the test says."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def _spend(limits: RateLimits, key: str) -> None:
    while limits.take(key, RATE, BURST) == 0:
        pass


def test_a_flood_of_new_addresses_keeps_the_table_bounded() -> None:
    """Ten thousand distinct addresses leave at most max_keys buckets behind."""
    limits = RateLimits(max_keys=100, clock=Clock())
    for n in range(10_000):
        limits.take(f"login:10.0.{n // 256}.{n % 256}", RATE, BURST)
    assert len(limits.buckets) == 100
    assert len(limits.overflow) == 1


def test_a_flood_of_new_addresses_does_not_reset_a_spent_bucket() -> None:
    """An attacker who spent its bucket and then floods the table is still refused."""
    limits = RateLimits(max_keys=50, clock=Clock())
    _spend(limits, "login:203.0.113.7")
    for n in range(5_000):
        limits.take(f"login:198.51.100.{n}", RATE, BURST)
    assert limits.take("login:203.0.113.7", RATE, BURST) > 0


def test_keys_that_do_not_fit_share_one_bucket() -> None:
    """With every bucket still draining, new keys get one burst between them, not one each."""
    limits = RateLimits(max_keys=3, clock=Clock())
    for key in ("a", "b", "c"):
        _spend(limits, key)
    granted = [limits.take(f"new-{n}", RATE, BURST) == 0 for n in range(BURST + 5)]
    assert granted == [True] * BURST + [False] * 5


def test_only_refilled_buckets_are_forgotten_least_recently_used_first() -> None:
    """A bucket full again is as good as new: it makes room; a draining one keeps its place."""
    clock = Clock()
    limits = RateLimits(max_keys=2, clock=clock)
    _spend(limits, "old")
    clock.now += BURST / RATE  # "old" has refilled completely
    _spend(limits, "recent")
    assert limits.take("newcomer", RATE, BURST) == 0
    assert list(limits.buckets) == ["recent", "newcomer"]
    assert limits.take("recent", RATE, BURST) > 0
