"""Answer cache: upstream answers kept for their TTL, the way Unbound, Blocky and Pi-hole FTL do.

Only what came from an upstream is stored (the step sits right before the upstream step, after the
block step), so a sinkhole answer can never be served as an upstream answer. TTLs are clamped to
[min_ttl, max_ttl] and served decremented; NXDOMAIN and NODATA are cached per RFC 2308 (for the
authority SOA's TTL, capped by its MINIMUM and by `negative_max_ttl`; without a SOA not at all).
SERVFAIL, truncated and other error answers are never cached. The key includes the DNSSEC OK bit.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache
from dnslib import QTYPE, RCODE, RR, DNSError, DNSRecord

from resolverguard.chain import Next, Reply, Request
from resolverguard.config import AnswerCacheConfig
from resolverguard.wire import QueryHead


@dataclass(frozen=True, slots=True)
class _Entry:
    record: DNSRecord
    stored: float
    ttl: int
    layout: WireLayout | None  # where the TTLs sit in the wire answer, for the fast path


@dataclass(frozen=True, slots=True)
class WireLayout:
    """The upstream's answer bytes and where to patch them: served hits are the stored bytes with
    the ID, the question's letter case and the TTLs rewritten in place, no re-encoding."""

    wire: bytes
    question_end: int
    ttls: tuple[tuple[int, int], ...]  # (offset of the 4-byte TTL field, TTL as received)
    opt_at: int | None  # offset of a trailing OPT record (dropped for clients without EDNS)


def _skip_name(wire: bytes, at: int) -> int:
    while True:
        length = wire[at]
        if length & 0xC0 == 0xC0:
            return at + 2
        if length & 0xC0:
            raise ValueError("bad label")
        at += length + 1
        if length == 0:
            return at


def wire_layout(wire: bytes) -> WireLayout | None:
    """Finds every TTL field of a one-question answer; None when its layout is unusual (then hits
    take the slower, re-encoding path)."""
    try:
        qd, an, ns, ar = struct.unpack("!HHHH", wire[4:12])
        if qd != 1:
            return None
        at = _skip_name(wire, 12) + 4
        question_end, ttls, opt_at = at, [], None
        for index in range(an + ns + ar):
            start = at
            at = _skip_name(wire, at)
            rtype, _, ttl, rdlength = struct.unpack("!HHIH", wire[at : at + 10])
            if rtype == QTYPE.OPT:
                if index != an + ns + ar - 1:
                    return None
                opt_at = start
            else:
                ttls.append((at + 4, ttl))
            at += 10 + rdlength
        return WireLayout(wire, question_end, tuple(ttls), opt_at) if at == len(wire) else None
    except (IndexError, ValueError, struct.error):
        return None


def served_wire(layout: WireLayout, query_packet: bytes, client_edns: bool, elapsed: int) -> bytes:
    out = bytearray(layout.wire)
    out[0:2] = query_packet[0:2]
    out[2] = (out[2] & 0xFE) | (query_packet[2] & 0x01)  # RD as the client asked
    out[12 : layout.question_end] = query_packet[12 : layout.question_end]  # the client's letter case
    for offset, ttl in layout.ttls:
        out[offset : offset + 4] = max(0, ttl - elapsed).to_bytes(4, "big")
    if layout.opt_at is not None and not client_edns:
        del out[layout.opt_at :]
        arcount = int.from_bytes(out[10:12], "big") - 1
        out[10:12] = arcount.to_bytes(2, "big")
    return bytes(out)


def cache_key(head: QueryHead) -> tuple[str, int, int, bool]:
    return head.qname.lower(), head.qtype, head.qclass, head.do


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

    def get(self, request: Request) -> bytes | None:
        if self.cfg.size <= 0:
            return None
        key, now = cache_key(request.head), self.clock()
        entry = self._entries.get(key)
        if entry is None or now - entry.stored >= entry.ttl:
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self.hits += 1
        layout, packet = entry.layout, request.packet
        if (
            layout is not None
            and packet[12 : layout.question_end].lower() == layout.wire[12 : layout.question_end].lower()
        ):
            return served_wire(layout, packet, request.head.edns, int(now - entry.stored))
        return served(entry, request.query, now)

    def put(self, request: Request, answer: bytes) -> None:
        """Stores an upstream answer, parsing it once (misses only, never on the hit path)."""
        if self.cfg.size <= 0:
            return
        try:
            record = DNSRecord.parse(answer)
        except (DNSError, ValueError, IndexError):
            return
        ttl = cacheable_ttl(record, self.cfg)
        if ttl:
            self._entries[cache_key(request.head)] = _Entry(record, self.clock(), ttl, wire_layout(answer))


class AnswerCacheStep:
    def __init__(self, cache: AnswerCache) -> None:
        self._cache = cache

    async def __call__(self, request: Request, next_step: Next) -> Reply:
        cached = self._cache.get(request)
        if cached is not None:
            request.notes["answer_cache"] = "hit"
            request.upstream_rcode = RCODE.get(cached[3] & 0x0F)
            return cached
        reply = await next_step(request)
        if reply is not None and request.error is None:
            self._cache.put(request, reply)
        return reply
