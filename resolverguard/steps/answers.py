"""Answer cache: upstream answers kept for their TTL, the way Unbound, Blocky and Pi-hole FTL do.

Only what came from an upstream is stored (the step sits right before the upstream step, after the
block step), so a sinkhole answer can never be served as an upstream answer. TTLs are clamped to
[min_ttl, max_ttl] and served decremented; NXDOMAIN and NODATA are cached per RFC 2308 (for the
authority SOA's TTL, capped by its MINIMUM and by `negative_max_ttl`; without a SOA not at all).
SERVFAIL, truncated and other error answers are never cached. The key includes the DNSSEC OK bit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache
from dnslib import QTYPE, RCODE, RR, DNSError, DNSRecord

from resolverguard.chain import Next, Reply, Request
from resolverguard.config import AnswerCacheConfig


@dataclass(frozen=True, slots=True)
class _Entry:
    record: DNSRecord
    stored: float
    ttl: int


def cache_key(query: DNSRecord) -> tuple[str, int, int, bool]:
    do = any(rr.rtype == QTYPE.OPT and rr.ttl & 0x8000 for rr in query.ar)
    q = query.q
    return str(q.qname).lower(), int(q.qtype), int(q.qclass), bool(do)


def cacheable_ttl(record: DNSRecord, cfg: AnswerCacheConfig) -> int | None:
    """How long an answer may be cached, or None when it must not be."""
    header = record.header
    if header.tc or header.rcode not in (RCODE.NOERROR, RCODE.NXDOMAIN):
        return None
    if header.rcode == RCODE.NOERROR and record.rr:
        ttl = min(rr.ttl for rr in record.rr)
        return int(max(cfg.min_ttl, min(ttl, cfg.max_ttl)))
    soas = [rr for rr in record.auth if rr.rtype == QTYPE.SOA]
    if not soas:
        return None  # RFC 2308: no SOA, no negative caching
    soa = soas[0]
    return int(min(soa.ttl, soa.rdata.times[-1], cfg.negative_max_ttl))


def _aged(rr: RR, elapsed: int) -> RR:
    if rr.rtype == QTYPE.OPT:
        return rr  # its TTL field carries EDNS flags, not a TTL
    return RR(rr.rname, rr.rtype, rr.rclass, max(0, rr.ttl - elapsed), rr.rdata)


def served(entry: _Entry, query: DNSRecord, now: float) -> bytes:
    """The cached answer for this query: its ID, TTLs decremented, OPT only if the client sent one."""
    elapsed = int(now - entry.stored)
    record = entry.record
    out = DNSRecord(header=record.header, q=query.q)
    out.header.id = query.header.id
    out.header.rd = query.header.rd
    out.rr = [_aged(rr, elapsed) for rr in record.rr]
    out.auth = [_aged(rr, elapsed) for rr in record.auth]
    client_edns = any(rr.rtype == QTYPE.OPT for rr in query.ar)
    out.ar = [_aged(rr, elapsed) for rr in record.ar if rr.rtype != QTYPE.OPT or client_edns]
    return bytes(out.pack())


class AnswerCache:
    def __init__(self, cfg: AnswerCacheConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg, self.clock = cfg, clock
        self._entries: LRUCache[tuple[str, int, int, bool], _Entry] = LRUCache(maxsize=max(1, cfg.size))
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, query: DNSRecord) -> bytes | None:
        if self.cfg.size <= 0:
            return None
        key, now = cache_key(query), self.clock()
        entry = self._entries.get(key)
        if entry is None or now - entry.stored >= entry.ttl:
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self.hits += 1
        return served(entry, query, now)

    def put(self, query: DNSRecord, answer: bytes) -> None:
        if self.cfg.size <= 0:
            return
        try:
            record = DNSRecord.parse(answer)
        except (DNSError, ValueError, IndexError):
            return
        ttl = cacheable_ttl(record, self.cfg)
        if ttl:
            self._entries[cache_key(query)] = _Entry(record, self.clock(), ttl)


class AnswerCacheStep:
    def __init__(self, cache: AnswerCache) -> None:
        self._cache = cache

    async def __call__(self, request: Request, next_step: Next) -> Reply:
        cached = self._cache.get(request.query)
        if cached is not None:
            request.notes["answer_cache"] = "hit"
            request.upstream_rcode = RCODE.get(cached[3] & 0x0F)
            return cached
        reply = await next_step(request)
        if reply is not None and request.error is None:
            self._cache.put(request.query, reply)
        return reply
