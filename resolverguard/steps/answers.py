"""Answer cache: upstream answers kept for their TTL, the way Unbound, Blocky and Pi-hole FTL do.

Only what came from an upstream is stored (the step sits right before the upstream step, after the
block step), so a sinkhole answer can never be served as an upstream answer. TTLs are clamped to
[min_ttl, max_ttl] and served decremented; NXDOMAIN and NODATA are cached per RFC 2308 (for the
authority SOA's TTL, capped by its MINIMUM and by `negative_max_ttl`; without a SOA not at all).
SERVFAIL, truncated and other error answers are never cached. The key includes the DNSSEC OK bit.

Prefetch (Unbound's rule): a hit in the last tenth of an answer's TTL is served from the cache and
also forwarded again in the background, so a name in use never expires into a client-visible miss.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from resolverguard.chain import Next, Reply, Request
from resolverguard.config import AnswerCacheConfig
from resolverguard.replies import edns_record
from resolverguard.wire import (
    ADDITIONAL,
    ANSWER,
    AUTHORITY,
    NOERROR,
    NXDOMAIN,
    OPT,
    RCODE_MASK,
    SOA,
    Flag,
    Message,
    QueryHead,
    Record,
    rcode_name,
)

# Bytes, not a tuple of tuples: cached answers then hold no objects the garbage collector tracks.
TTL_FIELD = struct.Struct("!HI")
_TC, _RD = int(Flag.TC) >> 8, int(Flag.RD) >> 8  # bits of header byte 2, as plain ints
_CD = int(Flag.CD)  # a bit of header byte 3
TTL_LIMIT = 0x7FFFFFFF  # RFC 2181 8: TTLs are 31 bits
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class WireLayout:
    """The upstream's answer bytes and where to patch them: served hits are the stored bytes with
    the ID, the question's letter case and the TTLs rewritten in place, no re-encoding. The answer
    is stored without its OPT record: an EDNS client gets ours appended (`opt`), whoever asked
    first, so EDNS looks the same on a hit as on a miss."""

    wire: bytes
    question_end: int
    ttls: bytes  # packed (offset of the 4-byte TTL field, TTL as served) pairs, see TTL_FIELD
    opt: bytes  # our OPT record for EDNS clients (its DO bit is part of the cache key)
    answer_ttl: int | None  # lowest TTL in the answer section; None when it is empty
    soa: tuple[int, int] | None  # the first authority SOA's (TTL, MINIMUM), for negative caching
    clamped: bool = False  # some TTL is served other than received (min_ttl/max_ttl)

    @property
    def rcode(self) -> int:
        return self.wire[3] & RCODE_MASK

    @property
    def truncated(self) -> bool:
        return bool(self.wire[2] & _TC)


@dataclass(slots=True)
class _Entry:
    layout: WireLayout
    stored: float
    ttl: int
    last: bytes | None = None  # the answer last served, reused while its TTLs and EDNS still fit
    last_elapsed: int = -1
    retired: bool = False  # replaced by a newer answer (resolverguard.shortcut stops reusing it)

    def serve(self, packet: bytes, client_edns: bool, elapsed: int) -> bytes:
        """The stored answer for this query. A popular name is asked many times a second: while
        the whole seconds elapsed (so every TTL) are the same, the answer last served is reused
        with only its ID replaced, when its question bytes (letter case), RD/CD bits and EDNS match."""
        last, end = self.last, self.layout.question_end
        if (
            last is not None
            and self.last_elapsed == elapsed
            and client_edns == (len(last) != len(self.layout.wire))
            and not (last[2] ^ packet[2]) & _RD
            and not (last[3] ^ packet[3]) & _CD
            and last[12:end] == packet[12:end]
        ):
            return packet[:2] + last[2:]
        self.last, self.last_elapsed = served_wire(self.layout, packet, client_edns, elapsed), elapsed
        return self.last


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


_COUNTS, _RECORD_HEAD = struct.Struct("!HHHH"), struct.Struct("!HHIH")  # unpack_from: no slice per record


def wire_layout(wire: bytes, min_ttl: int = 0, max_ttl: int = TTL_LIMIT, edns_opt: bytes = b"") -> WireLayout | None:
    """Reads a one-question answer once: every TTL field (served clamped to [min_ttl, max_ttl]),
    the answer's lowest TTL and the SOA timers; None when its layout is unusual (then it is not
    cached at all). A trailing OPT record is cut off; `edns_opt` is what EDNS clients get instead."""
    try:
        qd, an, ns, ar = _COUNTS.unpack_from(wire, 4)
        if qd != 1:
            return None
        at = _skip_name(wire, 12) + 4
        question_end, records = at, []
        for index in range(an + ns + ar):
            start = at
            at = _skip_name(wire, at)
            rtype, _, ttl, rdlength = _RECORD_HEAD.unpack_from(wire, at)
            section = ANSWER if index < an else AUTHORITY if index < an + ns else ADDITIONAL
            records.append(Record(section, start, (), rtype, ttl, at + 4, at + 10, at + 10 + rdlength))
            at += 10 + rdlength
        if at != len(wire):
            return None
        return layout_of(wire, Message(question_end, tuple(records)), min_ttl, max_ttl, edns_opt)
    except (IndexError, ValueError, struct.error):
        return None


def layout_of(
    wire: bytes, message: Message, min_ttl: int = 0, max_ttl: int = TTL_LIMIT, edns_opt: bytes = b""
) -> WireLayout | None:
    """`wire_layout` of an answer already read (`message` describes `wire`: the forwarder's
    `replies.forwarded_read` reads every upstream answer in full, so a miss need not read it twice)."""
    fields, opt_at, answer_ttl, soa, clamped = [], None, None, None, False
    records = message.records
    last = len(records) - 1
    pack = TTL_FIELD.pack
    for index, r in enumerate(records):  # one pass (the TTL fields packed here: no second walk)
        if r.rtype == OPT:
            if index != last:
                return None
            opt_at = r.start
        else:
            ttl = r.ttl
            if not min_ttl <= ttl <= max_ttl:
                ttl, clamped = min(max(ttl, min_ttl), max_ttl), True
            fields.append(pack(r.ttl_at, ttl))
        if r.section == ANSWER:
            answer_ttl = r.ttl if answer_ttl is None else min(answer_ttl, r.ttl)
        elif r.section == AUTHORITY and r.rtype == SOA and soa is None and r.end - r.rdata_at >= 22:
            soa = (r.ttl, int.from_bytes(wire[r.end - 4 : r.end], "big"))  # MINIMUM
    if opt_at is not None:
        ar = int.from_bytes(wire[10:12], "big")
        wire = wire[:10] + (ar - 1).to_bytes(2, "big") + wire[12:opt_at]
    return WireLayout(wire, message.question_end, b"".join(fields), edns_opt, answer_ttl, soa, clamped)


def served_wire(layout: WireLayout, query_packet: bytes, client_edns: bool, elapsed: int) -> bytes:
    out = bytearray(layout.wire)
    out[0:2] = query_packet[0:2]
    out[2] = (out[2] & ~_RD) | (query_packet[2] & _RD)  # RD as the client asked
    out[3] = (out[3] & ~_CD) | (query_packet[3] & _CD)  # CD as well (RFC 4035 3.2.2)
    out[12 : layout.question_end] = query_packet[12 : layout.question_end]  # the client's letter case
    for offset, ttl in TTL_FIELD.iter_unpack(layout.ttls):
        out[offset : offset + 4] = max(0, ttl - elapsed).to_bytes(4, "big")
    if client_edns:
        out[10:12] = (int.from_bytes(out[10:12], "big") + 1).to_bytes(2, "big")
        out += layout.opt
    return bytes(out)


def cache_key(head: QueryHead) -> bytes:
    """The question as sent (name, type, class), letter case folded, and the DNSSEC OK bit.
    Bytes rather than a tuple: cheaper to make, and not an object the garbage collector tracks."""
    return head.question.lower() + (b"\x01" if head.do else b"\x00")


def cacheable_ttl(layout: WireLayout, cfg: AnswerCacheConfig) -> int | None:
    """How long an answer may be cached, or None when it must not be."""
    if layout.truncated or layout.rcode not in (NOERROR, NXDOMAIN):
        return None
    if layout.rcode == NOERROR and layout.answer_ttl is not None:
        return int(max(cfg.min_ttl, min(layout.answer_ttl, cfg.max_ttl)))
    if layout.soa is None:
        return None  # RFC 2308: no SOA, no negative caching
    soa_ttl, minimum = layout.soa
    return int(min(soa_ttl, minimum, cfg.negative_max_ttl))


class Lru(Generic[V]):
    """Least recently used first out, on an OrderedDict: every operation is one or two C calls.
    cachetools' LRUCache does its insert bookkeeping in Python (a size per item, a second ordered
    dict): an insert with an eviction, which every miss makes once the cache is full, cost twice
    as much (bench/missprofile.py: 0.62 against 0.29 us under load)."""

    __slots__ = ("_items", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self._items: OrderedDict[bytes, V] = OrderedDict()
        self.maxsize = maxsize

    def get(self, key: bytes) -> V | None:
        """The value (now the most recently used), or None."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def __setitem__(self, key: bytes, value: V) -> None:
        items = self._items
        items[key] = value
        items.move_to_end(key)
        if len(items) > self.maxsize:
            items.popitem(last=False)

    def __delitem__(self, key: bytes) -> None:
        del self._items[key]

    def __contains__(self, key: bytes) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


# A stored answer until its first hit: WireLayout's fields, then when it was stored and its TTL.
_Fresh = tuple[bytes, int, bytes, bytes, "int | None", "tuple[int, int] | None", bool, float, int]


def _fresh(layout: WireLayout, stored: float, ttl: int) -> _Fresh:
    """An answer as the cache stores it until it is first served: a plain tuple of bytes, ints and
    None, which the garbage collector stops tracking once it has seen it. Every miss stores one,
    and most are never asked again (a never-seen name): as an `_Entry` and a `WireLayout` each was
    two objects every full collection walked, ~20,000 of them in a full cache, and those pauses
    (~10 ms idle, more under load) are what set a miss's p99 at low load (bench/missprofile.py).
    A NamedTuple would not do: the collector untracks exact tuples only."""
    return (
        layout.wire,
        layout.question_end,
        layout.ttls,
        layout.opt,
        layout.answer_ttl,
        layout.soa,
        layout.clamped,
        stored,
        ttl,
    )


PREFETCH_FRACTION = 0.1  # refresh in the last tenth of the TTL
PREFETCH_MIN_TTL = 10  # answers kept for less are not worth a refresh


class AnswerCache:
    def __init__(
        self, cfg: AnswerCacheConfig, clock: Callable[[], float] = time.monotonic, source: object = None
    ) -> None:
        """`source`: where the answers come from (the upstreams); answers from other servers are
        not carried across a reload."""
        self.cfg, self.clock, self.source = cfg, clock, source
        # An answer is stored as a plain tuple (`_fresh`) and becomes an `_Entry` on its first hit.
        self._entries: Lru[_Entry | _Fresh] = Lru(max(1, cfg.size))
        self._refreshing: set[bytes] = set()
        self.hits = self.misses = self.prefetches = 0

    @classmethod
    def carried(cls, old: AnswerCache | None, cfg: AnswerCacheConfig, source: object) -> AnswerCache:
        """The running cache across a reload when neither its settings nor the upstreams changed."""
        return old if old is not None and (old.cfg, old.source) == (cfg, source) else cls(cfg, source=source)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, request: Request) -> tuple[bytes, bool] | None:
        """The cached answer for this query, and whether it is due for a prefetch (at most one
        refresh per entry is in flight; call `refreshed` when it is done)."""
        if self.cfg.size <= 0:
            return None
        question = request.head.question
        if request.packet[12 : 12 + len(question)] != question:
            return None  # an unusual query (compressed question): its bytes cannot be patched in
        key, now = cache_key(request.head), self.clock()
        found = self._entries.get(key)
        entry = found if found is None or isinstance(found, _Entry) else self._kept(key, found)
        if entry is None or now - entry.stored >= entry.ttl:
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self.hits += 1
        age = now - entry.stored
        due = (
            self.cfg.prefetch
            and entry.ttl >= PREFETCH_MIN_TTL
            and entry.ttl - age <= entry.ttl * PREFETCH_FRACTION
            and key not in self._refreshing
        )
        if due:
            self._refreshing.add(key)
        return entry.serve(request.packet, request.head.edns, int(age)), due

    @property
    def refreshing(self) -> int:
        """Prefetches in flight (their answers not stored yet)."""
        return len(self._refreshing)

    def entry_for(self, request: Request) -> _Entry | None:
        """The entry a query is answered from (no expiry check: see `unchanged_until`)."""
        if self.cfg.size <= 0:
            return None
        key = cache_key(request.head)
        found = self._entries.get(key)
        return found if found is None or isinstance(found, _Entry) else self._kept(key, found)

    def _kept(self, key: bytes, fresh: _Fresh) -> _Entry:
        """The entry an answer stored by `put` becomes when it is first served (see `_fresh`)."""
        entry = self._entries[key] = _Entry(WireLayout(*fresh[:7]), fresh[7], fresh[8])
        return entry

    def reuse_bounds(self, entry: _Entry, reply: bytes) -> tuple[float, float] | None:
        """Until when (this cache's clock) `entry` serves `reply` again to a query with the same
        bytes (the end of the whole second its TTLs were counted in), and until when it serves that
        query at all without a refresh (the start of the prefetch window, or expiry); None when
        `reply` is not what it served last."""
        if entry.last is None or entry.last[2:] != reply[2:] or entry.retired:
            return None
        hard = entry.stored + entry.ttl
        if self.cfg.prefetch and entry.ttl >= PREFETCH_MIN_TTL:  # `get` may start a refresh from here on
            hard = min(hard, entry.stored + entry.ttl - entry.ttl * PREFETCH_FRACTION)
        return min(entry.stored + entry.last_elapsed + 1, hard), hard

    def refreshed(self, request: Request) -> None:
        self._refreshing.discard(cache_key(request.head))

    def put(self, request: Request, answer: bytes) -> WireLayout | None:
        """Stores an upstream answer, read once on the wire (misses only, never on the hit path);
        its layout, or None when the answer may not be cached."""
        if self.cfg.size <= 0:
            return None
        read, opt = request.answer_read, edns_record(request.head.do)
        if read is not None and read[0] is answer:  # the forwarder read it already (a miss)
            layout = layout_of(answer, read[1], self.cfg.min_ttl, self.cfg.max_ttl, opt)
        else:
            layout = wire_layout(answer, self.cfg.min_ttl, self.cfg.max_ttl, opt)
        if layout is None:
            return None
        ttl = cacheable_ttl(layout, self.cfg)
        if not ttl:
            return None
        key = cache_key(request.head)
        old = self._entries.get(key)
        if isinstance(old, _Entry):
            old.retired = True
        self._entries[key] = _fresh(layout, self.clock(), ttl)
        return layout


class AnswerCacheStep:
    def __init__(self, cache: AnswerCache) -> None:
        self._cache = cache
        self._refreshes: set[asyncio.Task[None]] = set()

    async def __call__(self, request: Request, next_step: Next) -> Reply:
        cached = self._cache.get(request)
        if cached is not None:
            answer, due = cached
            request.notes["answer_cache"] = "hit"
            request.upstream_rcode = rcode_name(answer)
            if due:
                self._refresh_later(request, next_step)
            return answer
        reply = await next_step(request)
        if reply is not None and request.upstream_error is None:  # (a model error does not spoil an answer)
            layout = self._cache.put(request, reply)
            question = request.head.question
            if layout is not None and layout.clamped and request.packet[12 : 12 + len(question)] == question:
                entry = self._cache.entry_for(request)
                if entry is not None:
                    return entry.serve(request.packet, request.head.edns, 0)  # as a hit would be: TTLs clamped
        return reply

    def _refresh_later(self, request: Request, next_step: Next) -> None:
        """Forwards a copy of the query in the background; the client already has its answer."""
        copy = replace(request, notes={}, upstream_error=None, upstream_rcode=None, upstream_seconds=None)
        task = asyncio.ensure_future(self._refresh(copy, next_step))
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    async def _refresh(self, request: Request, next_step: Next) -> None:
        try:
            reply = await next_step(request)
            if reply is not None and request.upstream_error is None and self._cache.put(request, reply):
                self._cache.prefetches += 1  # counted once the fresh answer is stored
        finally:
            self._cache.refreshed(request)
