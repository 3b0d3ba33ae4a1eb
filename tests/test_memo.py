"""The bounded memo behind the ACL, client-group and name lookups."""

from __future__ import annotations

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
