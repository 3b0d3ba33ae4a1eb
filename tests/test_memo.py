"""The bounded memo behind the ACL, client-group and name lookups."""

from __future__ import annotations

import weakref

from resolverguard.memo import BoundedMemo


def test_memo_is_bounded_and_keeps_recently_used_keys() -> None:
    computed: list[str] = []

    def compute(key: str) -> int:
        computed.append(key)
        return len(key)

    memo = BoundedMemo(compute, size=100)
    assert memo("hot") == 3
    for i in range(10_000):
        assert memo(f"k{i}") == len(f"k{i}")
        memo("hot")  # used all the time: never evicted
        assert len(memo) <= 100
    assert computed.count("hot") == 1
    assert memo("k0") == 2 and computed.count("k0") == 2  # long evicted: computed again


def test_memo_frees_a_dropped_generation_a_few_keys_at_a_time() -> None:
    """Freeing a whole generation at once held the event loop ~1.6 ms (issue #17): the one dropped
    at a turnover goes two keys per new key, and is gone before the next turnover."""

    class Value:
        pass

    made: list[weakref.ref[Value]] = []

    def compute(key: str) -> Value:
        value = Value()
        made.append(weakref.ref(value))
        return value

    def alive(first: int, last: int) -> int:
        return sum(1 for ref in made[first:last] if ref() is not None)

    memo = BoundedMemo(compute, size=100)  # generations of 50 keys
    for i in range(100):
        memo(f"k{i}")
    assert alive(0, 50) == 50  # the old generation, still served
    memo("k100")  # a turnover: k0..k49 are dropped, but not freed at once
    assert alive(0, 50) == 48
    for i in range(101, 124):
        memo(f"k{i}")
        assert alive(0, 50) == 48 - 2 * (i - 100)
    memo("k124")
    assert alive(0, 50) == 0 and alive(50, 125) == 75  # k50.. are the old and young generations
    assert memo("k60") is made[60]() and len(made) == 125  # still served from the old generation
