"""A bounded memo for per-query lookups that repeat: client address -> ACL answer or client group,
query name -> registrable name. Bounded (LRU) so a flood of new keys costs evictions, not memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from cachetools import LRUCache

T = TypeVar("T")


class BoundedMemo(Generic[T]):
    def __init__(self, compute: Callable[[str], T], size: int = 65536) -> None:
        self._compute = compute
        self._seen: LRUCache[str, T] = LRUCache(maxsize=size)

    def __call__(self, key: str) -> T:
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = self._compute(key)
        return found
