"""A bounded memo for per-query lookups that repeat: client address -> ACL answer or client group,
query name -> registrable name. Bounded so a flood of new keys costs evictions, not memory.

Two generations of plain dicts instead of an exact LRU: a hit is one dict lookup (the hot path of
every query runs three of these), and a key used since the last turnover survives it, which is all
the recency a memo needs. At most `size` keys are held.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
_MISSING = object()  # (values may be None)


class BoundedMemo(Generic[T]):
    """At a turnover the old generation is not freed at once but emptied two entries per new key
    (`_retired`): freeing a whole generation (8,192 parsed names) held the event loop ~1.6 ms, a
    stall every few seconds under never-seen names (issue #17, bench/results/p99_p99s11.md). A
    generation takes `size // 2` new keys to fill, so the retired one is empty before the next,
    and the keys held (retired ones included) never exceed `size`."""

    def __init__(self, compute: Callable[[str], T], size: int = 65536) -> None:
        self._compute, self._half = compute, max(1, size // 2)
        self._young: dict[str, T] = {}
        self._old: dict[str, T] = {}
        self._retired: dict[str, T] = {}

    def __call__(self, key: str) -> T:
        found = self._young.get(key, _MISSING)  # (not `try: [key]`: a raised KeyError cost ~0.5 us per new key)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        old = self._old
        found = old.pop(key) if key in old else self._compute(key)
        if len(self._young) >= self._half:  # (the retired one is empty by now: see the class)
            self._retired, self._old, self._young = old, self._young, {}
        retired = self._retired
        if retired:
            retired.popitem()
            if retired:
                retired.popitem()
        self._young[key] = found
        return found

    def __len__(self) -> int:
        return len(self._young) + len(self._old)
