"""The front door: client access control and per-client rate limiting.

These two decide from the source address alone, so the server asks them before it even parses the
packet (`Gate.admit`): under a flood, a turned-away datagram costs a dictionary lookup, not a DNS
parse. They also sit in front of the query log: a flood of refused queries must not fill the disk,
so refusals are counted and summarised in at most one stderr line per interval instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TextIO

from cachetools import LRUCache

from resolverguard.addresses import IPNetwork, client_ip, networks, within
from resolverguard.chain import Refusal
from resolverguard.memo import BoundedMemo


class SummaryLine:
    """Counts events per key and prints at most one summary line per `interval` seconds."""

    def __init__(
        self,
        what: str,
        interval: float = 10.0,
        stderr: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.interval, self.stderr, self.clock = what, interval, stderr, clock
        self.total = 0
        self._counts: dict[str, int] = {}
        self._last = clock()

    def count(self, key: str) -> None:
        self.total += 1
        if len(self._counts) < 1000 or key in self._counts:
            self._counts[key] = self._counts.get(key, 0) + 1
        now = self.clock()
        if now - self._last >= self.interval:
            top = sorted(self._counts.items(), key=lambda kv: -kv[1])[:5]
            print(
                f"resolverguard: {self.what}: {sum(self._counts.values())} queries in the last "
                f"{now - self._last:.0f}s (top clients: {', '.join(f'{k} {v}' for k, v in top)})",
                file=self.stderr or sys.stderr,
                flush=True,
            )
            self._counts.clear()
            self._last = now


class ClientAcl:
    """allow_clients as networks; answers are memoised per address (bounded) for the flood case."""

    def __init__(self, items: Iterable[str | IPNetwork]) -> None:
        self.networks = networks(items)
        self.allows = BoundedMemo(self._check)  # the same answer for every query of a client

    def _check(self, address: str) -> bool:
        ip = client_ip(address)
        return ip is not None and within(ip, self.networks)


@dataclass
class AclGate:
    acl: ClientAcl
    refusal: Refusal
    summary: SummaryLine = field(default_factory=lambda: SummaryLine("refused clients outside allow_clients"))
    at_accept: bool = True  # a refused client gets no TCP connection at all

    def admit(self, client: str) -> bool:
        if self.acl.allows(client):
            return True
        self.summary.count(client)
        return False


class TokenBuckets:
    """One token bucket per client address, in a bounded LRU so a spoofed-source flood cannot grow
    memory: a forgotten client simply starts again with a full bucket."""

    def __init__(
        self, rate: float, burst: float, clients: int = 65536, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: LRUCache[str, list[float]] = LRUCache(maxsize=clients)

    def take(self, client: str) -> bool:
        now = self.clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            self._buckets[client] = [self.burst - 1.0, now]
            return True
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True


@dataclass
class RateLimitGate:
    buckets: TokenBuckets
    refusal: Refusal
    summary: SummaryLine = field(default_factory=lambda: SummaryLine("rate-limited"))
    at_accept: bool = False  # a connection is not a query: tokens are taken per message

    def admit(self, client: str) -> bool:
        if self.buckets.take(client):
            return True
        self.summary.count(client)
        return False
