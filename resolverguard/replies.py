"""Answers we make ourselves (blocks, SERVFAIL), written straight onto the wire.

Building a reply with dnslib costs a full parse of the query plus object packing, tens of
microseconds; a sinkhole answer is a header, the client's own question bytes and one record whose
owner is a compression pointer to that question. Only the question is echoed (never re-encoded),
so the client sees its own letter case (0x20 randomisation survives).
"""

from __future__ import annotations

import functools
import ipaddress
import struct

from dnslib import DNSError, DNSRecord

from resolverguard.wire import (
    AAAA,
    ADDITIONAL,
    ANSWER,
    AUTHORITY,
    CNAME,
    DNAME,
    EDNS_DO,
    HINFO,
    MX,
    NS,
    NSEC,
    NSEC3,
    OPCODE_MASK,
    OPT,
    RRSIG,
    SOA,
    SRV,
    A,
    Flag,
    Message,
    Name,
    QueryHead,
    Rclass,
    Record,
    read_message,
    read_name,
    within,
)

try:  # the same reading in C (resolverguard/_wirec.c); without a C compiler at install, Python alone
    from resolverguard._wirec import forwarded_read as _forwarded_read_c
except ImportError:
    _forwarded_read_c = None

# Plain ints, combined once at import: a reply header costs no enum arithmetic.
_QR_RA = int(Flag.QR | Flag.RA)
_COPIED = int(OPCODE_MASK | Flag.RD | Flag.CD)  # opcode, RD and CD, as the query had them (RFC 4035 3.2.2)
_COPIED_BYTE2 = int(OPCODE_MASK | Flag.RD) >> 8
_QR_BYTE2 = int(Flag.QR) >> 8
_TC_RA = int(Flag.TC | Flag.RA)
_NOT_AA_Z = 0xFFFF ^ int(Flag.AA | 0x0040)  # AA (we are not authoritative) and the reserved Z bit
_CLASS_IN = int(Rclass.IN)
_QUESTION_NAME = b"\xc0\x0c"  # pointer to offset 12: the question's name
# Our EDNS (RFC 6891): a 1232-byte buffer (flag day 2020), version 0, no options, DO as the client
# sent it (RFC 3225); the same on every path (forwarded, cached, blocked, truncated).
_OPT_1232 = b"\x00" + struct.pack("!HHIH", OPT, 1232, 0, 0)
_OPT_1232_DO = b"\x00" + struct.pack("!HHIH", OPT, 1232, EDNS_DO, 0)
_OPT_BADVERS = b"\x00" + struct.pack("!HHIH", OPT, 1232, 1 << 24, 0)  # extended rcode 16 = 1 << 4 | 0


def opt(head: QueryHead) -> bytes:
    """Our OPT record for this client: none without EDNS, else 1232 bytes with its DO bit."""
    if not head.edns:
        return b""
    return _OPT_1232_DO if head.do else _OPT_1232


def edns_record(do: bool) -> bytes:
    """Our OPT record for an EDNS client with this DO bit."""
    return _OPT_1232_DO if do else _OPT_1232


def header(head: QueryHead, rcode: int, answers: int = 0, authority: int = 0) -> bytes:
    """Reply header: the client's ID, QR/RA set, one question, our OPT when the client sent one."""
    flags = _QR_RA | head.flags & _COPIED | rcode
    return struct.pack("!HHHHHH", head.id, flags, 1, answers, authority, 1 if head.edns else 0)


def empty(head: QueryHead, rcode: int) -> bytes:
    """No records: NXDOMAIN/REFUSED/SERVFAIL without an SOA."""
    return header(head, rcode) + head.question + opt(head)


def badvers(head: QueryHead) -> bytes:
    """BADVERS (extended rcode 16) to an EDNS version we do not speak (RFC 6891 6.1.3): our OPT,
    version 0, carries the upper bits of the rcode; the header's four bits are 0."""
    return header(head, 0) + head.question + _OPT_BADVERS


def address(head: QueryHead, ip: str, ttl: int) -> bytes:
    """One A or AAAA record (by the address's family) for the question's name."""
    rdata = _packed(ip)
    rtype = A if len(rdata) == 4 else AAAA
    record = _QUESTION_NAME + struct.pack("!HHIH", rtype, _CLASS_IN, ttl, len(rdata)) + rdata
    return header(head, 0, answers=1) + head.question + record + opt(head)


def negative(head: QueryHead, rcode: int, zone_labels: int, ttl: int) -> bytes:
    """NXDOMAIN or NODATA with a synthetic SOA, so stub resolvers cache the answer for `ttl`
    seconds only (RFC 2308). The SOA's owner is the last `zone_labels` labels of the question's
    name (the registrable domain), written as a pointer into the question."""
    owner = struct.pack("!H", 0xC000 | 12 + suffix_offset(head.question, zone_labels))
    rdata = _soa_rdata(ttl)
    record = owner + struct.pack("!HHIH", SOA, _CLASS_IN, ttl, len(rdata)) + rdata
    return header(head, rcode, authority=1) + head.question + record + opt(head)


ANY_TTL = 3600


def minimal_any(head: QueryHead) -> bytes:
    """RFC 8482's answer to ANY: one synthesized HINFO record ("RFC8482", ""), not every record the
    name has. ANY is what amplification attacks ask for (25x the query's size through a full
    answer, issue #14); real clients ask for the types they want."""
    rdata = b"\x07RFC8482\x00"
    record = _QUESTION_NAME + struct.pack("!HHIH", HINFO, _CLASS_IN, ANY_TTL, len(rdata)) + rdata
    return header(head, 0, answers=1) + head.question + record + opt(head)


def header_only(packet: bytes, rcode: int) -> bytes | None:
    """A bare reply to a packet we could not (or would not) read; None if it is not even a query
    header. Needs no parse: the ID, opcode and RD are copied from the first bytes."""
    if len(packet) < 12 or packet[2] & _QR_BYTE2:
        return None
    flags = _QR_RA | (packet[2] & _COPIED_BYTE2) << 8 | rcode
    return packet[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)


def truncated(reply: bytes, head: QueryHead) -> bytes:
    """The reply cut to header and question with TC set, so the client retries over TCP.

    Written from the reply's first four bytes and the client's own question: parsing the whole
    reply with dnslib to read a 12-byte header cost ~3 ms for a 4 KB answer, and two clients within
    the rate limit asking for one pushed everyone else's p99 over a second (issue #14)."""
    flags = (reply[2] << 8 | reply[3]) & _NOT_AA_Z | _TC_RA
    return reply[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 1 if head.edns else 0) + head.question + opt(head)


def forwarded(answer: bytes, head: QueryHead) -> bytes | None:
    """An upstream's answer as we pass it on, or None when it is malformed (the forwarder then
    tries the next upstream, or answers SERVFAIL).

    Read in full once (misses only; hits are served from the answer cache), then:
    records outside the question's bailiwick are dropped (issue #14: `victim.com A 6.6.6.6` in an
    answer for www.example.org reached the client); TTLs of 2^31 or more are 0 (RFC 2181 8); the
    header is ours (RA set, AA and Z cleared, RD and CD as the client sent them: RFC 1035, 4035
    3.2.2); the upstream's OPT is replaced by ours, so EDNS looks the same on every path."""
    read = forwarded_read(answer, head)
    return read[0] if read is not None else None


def forwarded_read(answer: bytes, head: QueryHead, native: bool = True) -> tuple[bytes, Message] | None:
    """`forwarded`, with the records of the answer as passed on (where each one's TTL field is,
    as `read_message` would read them): the answer cache stores a miss's answer from these
    instead of reading it again (`steps.answers.layout_of`).

    `native` (and the C module built): the usual answer is read, checked and rewritten by
    `_wirec.forwarded_read`, the same steps in C (~9% of a never-seen name's CPU in Python,
    bench/results/miss_rd12b.md); it hands anything unusual (records out of the bailiwick, more
    than 128 records, ...) back to the Python below, which decides as before. tests/test_wirec.py
    holds the two to the same result on random and malformed answers."""
    if native and _forwarded_read_c is not None:
        read: tuple[bytes, Message] | None | bool = _forwarded_read_c(
            answer, head.flags, head.edns, head.do, Record, Message
        )
        if read is not False:
            return read  # type: ignore[return-value]
    return _forwarded_read(answer, head)


def _forwarded_read(answer: bytes, head: QueryHead) -> tuple[bytes, Message] | None:
    answer = bytes(answer)  # (names read from it must be hashable)
    message = read_message(answer)
    if message is None:
        return None
    try:
        keep = bailiwick(answer, message)
    except (ValueError, IndexError):  # a CNAME/DNAME/NS/MX/SRV target that does not read: malformed
        return None
    if not all(keep):
        rebuilt = _without(answer, keep)
        message = read_message(rebuilt) if rebuilt is not None else None
        if rebuilt is None or message is None:
            return None
        answer = rebuilt
    return _ours(answer, message, head)


def bailiwick(wire: bytes, message: Message) -> list[bool]:
    """Which records are about the question: in the answer section the name asked and its
    CNAME/DNAME chain; in the authority section the zones above it (SOA, NS) and their DNSSEC
    denial records; in the additional section addresses of the names those records point to."""
    records, qname = message.records, message.qname or read_name(wire, 12)[0]
    chain, keep = {qname}, [False] * len(records)
    for i, r in enumerate(records):  # the usual answer, owned by the name asked, is decided in this pass
        if r.section != ANSWER:
            break
        if r.owner != qname or r.rtype == CNAME or r.rtype == DNAME:
            _answer_chain(wire, message, chain, keep)  # a CNAME/DNAME chain, or records about other names
            break
        keep[i] = True
    zones, targets = set(), set()
    for i, r in enumerate(records):
        if r.section == AUTHORITY and r.rtype != OPT and _covers(chain, r.owner):
            keep[i] = True
            zones.add(r.owner)
    for i, r in enumerate(records):
        if r.section == AUTHORITY and not keep[i] and r.rtype in (NSEC, NSEC3, RRSIG):
            keep[i] = any(within(r.owner, z) for z in zones)
        if keep[i] and r.rtype in _POINTING:
            targets.add(message.target(wire, r))
        elif r.section == ADDITIONAL:
            keep[i] = r.rtype == OPT or r.owner in targets or r.owner in chain
    return keep


_POINTING = frozenset((NS, MX, SRV))  # records whose target's addresses may ride in the additional section


def _covers(chain: set[Name], owner: Name) -> bool:
    """Is any name of the chain at or below `owner`? (A loop, not any(): no generator per record.)"""
    for name in chain:  # noqa: SIM110 - see the docstring
        if within(name, owner):
            return True
    return False


def _answer_chain(wire: bytes, message: Message, chain: set[Name], keep: list[bool]) -> None:
    """Marks the answer records owned by the name asked or its CNAME/DNAME chain (which may be out
    of order: each pass adds at least one record), and adds the chain's names to `chain`."""
    records = message.records
    changed = True
    while changed:
        changed = False
        for i, r in enumerate(records):
            if keep[i] or r.section != ANSWER:
                continue
            if r.owner in chain or (r.rtype == DNAME and any(within(n, r.owner) for n in chain)):
                keep[i] = changed = True
                if r.rtype == CNAME:
                    chain.add(message.target(wire, r) or ())


def _without(wire: bytes, keep: list[bool]) -> bytes | None:
    """The message without the records not kept, re-encoded by dnslib (names in the dropped
    records may be what later records' compression pointers point to). Rare: only answers that
    carried out-of-bailiwick records come here."""
    try:
        record = DNSRecord.parse(wire)
    except (DNSError, ValueError, IndexError, struct.error, UnicodeDecodeError, TypeError):
        return None
    an, ns = len(record.rr), len(record.auth)
    record.rr = [rr for rr, k in zip(record.rr, keep[:an], strict=True) if k]
    record.auth = [rr for rr, k in zip(record.auth, keep[an : an + ns], strict=True) if k]
    record.ar = [rr for rr, k in zip(record.ar, keep[an + ns :], strict=True) if k]
    return bytes(record.pack())


_FROM_UPSTREAM = int(Flag.TC | Flag.AD | 0x000F)  # what the upstream decides: TC, AD and the rcode
_TTL_ZERO = bytes(4)


def _ours(wire: bytes, message: Message, head: QueryHead) -> tuple[bytes, Message] | None:
    """The header, TTLs and OPT rewritten in place (no re-encoding), and the records of the result."""
    out = bytearray(wire)
    flags = _QR_RA | head.flags & _COPIED | (wire[2] << 8 | wire[3]) & _FROM_UPSTREAM
    out[2:4] = flags.to_bytes(2, "big")
    extended, opt_at, records = 0, None, message.records
    for r in records:
        if r.rtype == OPT:
            if opt_at is not None or r is not message.records[-1] or r.section != ADDITIONAL:
                return None  # one OPT, last, in the additional section (RFC 6891 6.1.1)
            extended, opt_at = wire[r.ttl_at], r.start
        elif r.ttl >= 0x80000000:  # RFC 2181 8: the top bit set means 0
            out[r.ttl_at : r.ttl_at + 4] = _TTL_ZERO
            records = tuple(x._replace(ttl=0) if x is r else x for x in records)
    additional = int.from_bytes(wire[10:12], "big")
    if opt_at is not None:
        del out[opt_at:]
        additional -= 1
        records = records[:-1]
    if head.edns:
        start = len(out)
        out += b"\x00" + struct.pack("!HHBBHH", OPT, 1232, extended, 0, EDNS_DO if head.do else 0, 0)
        additional += 1
        ttl = int.from_bytes(out[start + 5 : start + 9], "big")
        records += (Record(ADDITIONAL, start, (), OPT, ttl, start + 5, start + 11, start + 11),)
    out[10:12] = additional.to_bytes(2, "big")
    return bytes(out), Message(message.question_end, records, message.qname)


def suffix_offset(question: bytes, labels: int) -> int:
    """Offset (within the question) of the name made of its last `labels` labels; 0 (the whole
    name) when the name has no more labels than that or `labels` is 0."""
    starts, at = [], 0
    while at < len(question) and question[at]:
        starts.append(at)
        at += question[at] + 1
    return starts[-labels] if 0 < labels < len(starts) else 0


@functools.lru_cache(maxsize=16)
def _packed(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


@functools.lru_cache(maxsize=16)
def _soa_rdata(ttl: int) -> bytes:
    """MNAME, RNAME and the five timers; MINIMUM (the negative TTL) is the sinkhole TTL."""
    names = b"".join(_name(n) for n in ("sinkhole.resolverguard.invalid", "hostmaster.resolverguard.invalid"))
    return names + struct.pack("!IIIII", 1, 3600, 600, 86400, ttl)


def _name(text: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in text.split(".")) + b"\x00"
