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
    def __init__(self, compute: Callable[[str], T], size: int = 65536) -> None:
        self._compute, self._half = compute, max(1, size // 2)
        self._young: dict[str, T] = {}
        self._old: dict[str, T] = {}

    def __call__(self, key: str) -> T:
        found = self._young.get(key, _MISSING)  # (not `try: [key]`: a raised KeyError cost ~0.5 us per new key)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        old = self._old
        found = old.pop(key) if key in old else self._compute(key)
        if len(self._young) >= self._half:
            self._old, self._young = self._young, {}
        self._young[key] = found
        return found

    def __len__(self) -> int:
        return len(self._young) + len(self._old)
