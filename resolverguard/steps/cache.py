"""Verdict cache: the model's score per scored name, so popular names are scored once.

Keyed by the string the model reads (every `*.example.com` query shares one entry) and storing the
score, not the action, so a policy reload or a per-client policy never sees a stale decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import LRUCache

from resolverguard.chain import Outcome, Request
from resolverguard.names import InputForm


class VerdictCache:
    """LRU with a TTL; size 0 disables it. Each entry carries its own expiry time (a plain LRU
    of (score, expires) is several times cheaper per hit than cachetools' TLRUCache)."""

    def __init__(
        self, size: int, ttl: float, clock: Callable[[], float] = time.monotonic, scorer: object = None
    ) -> None:
        self._cache: LRUCache[str, tuple[float, float]] | None = None
        self._ttl, self._clock, self.scorer = ttl, clock, scorer
        # Told of every score computed here (not of adopted ones): the fleet sync's write-behind
        # queue when `sync.share_verdicts` is on (one append, never a wait on the answer's path).
        self.on_scored: Callable[[str, float], None] | None = None
        if size > 0 and ttl > 0:
            self._cache = LRUCache(maxsize=size)

    @classmethod
    def carried(cls, old: VerdictCache | None, size: int, ttl: float, scorer: object) -> VerdictCache:
        """The running cache across a reload while the model is the same: scores do not depend on
        the policy, so a new policy need not re-score every popular name."""
        return old if old is not None and old.scorer is scorer else cls(size, ttl, scorer=scorer)

    def get(self, key: str) -> float | None:
        found = self._cache.get(key) if self._cache is not None else None
        if found is None:
            return None
        if found[1] <= self._clock():
            del self._cache[key]  # type: ignore[union-attr]  # found implies a cache
            return None
        return found[0]

    def expires(self, key: str) -> float | None:
        """When the score kept for `key` expires (this cache's clock), or None if none is kept."""
        found = self._cache.get(key) if self._cache is not None else None
        return found[1] if found is not None and found[1] > self._clock() else None

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def put(self, key: str, score: float) -> None:
        if self._cache is not None:
            self._cache[key] = (score, self._clock() + self._ttl)
            if self.on_scored is not None:
                self.on_scored(key, score)

    def adopt(self, key: str, score: float, age: float) -> bool:
        """A score another instance computed `age` seconds ago (resolverguard.sync), kept for what
        is left of this cache's TTL; never replaces a score of this instance. True when taken."""
        if self._cache is None or age >= self._ttl or key in self._cache:
            return False
        self._cache[key] = (score, self._clock() + self._ttl - max(0.0, age))
        return True

    @property
    def ttl(self) -> float:
        return self._ttl

    def __len__(self) -> int:
        return len(self._cache) if self._cache is not None else 0


class CacheStep:
    """Chain step: fills `request.score` from the cache (the score step stores what it finds)."""

    def __init__(self, cache: VerdictCache, form: InputForm = InputForm.LABEL) -> None:
        self._cache, self._form = cache, form

    def check(self, request: Request) -> Outcome:
        key = request.name.model_input(self._form) if request.name and request.verdict is None else None
        if key is not None:
            cached = self._cache.get(key)
            if cached is not None:
                request.score, request.score_cached = cached, True
        return None
