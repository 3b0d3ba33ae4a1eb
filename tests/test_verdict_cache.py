"""The verdict cache: scores per scored name, bounded, expiring after their TTL."""

from __future__ import annotations

from resolverguard.steps.cache import VerdictCache


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_scores_expire_after_the_ttl_and_the_size_is_bounded() -> None:
    clock = Clock()
    cache = VerdictCache(size=3, ttl=60, clock=clock)
    cache.put("example", 0.01)
    clock.now += 59
    assert cache.get("example") == 0.01
    clock.now += 1
    assert cache.get("example") is None and len(cache) == 0  # expired entries are dropped
    for i in range(10):
        cache.put(f"n{i}", i / 10)
    assert len(cache) == 3 and cache.get("n9") == 0.9 and cache.get("n0") is None


def test_size_zero_disables_the_cache() -> None:
    cache = VerdictCache(size=0, ttl=60)
    cache.put("example", 0.5)
    assert cache.get("example") is None and len(cache) == 0
