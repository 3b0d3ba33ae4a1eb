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

from dnslib import EDNS0, DNSRecord

from resolverguard.wire import AAAA, OPCODE_MASK, OPT, SOA, A, Flag, QueryHead, Rclass

# Plain ints, combined once at import: a reply header costs no enum arithmetic.
_QR_RA = int(Flag.QR | Flag.RA)
_COPIED = int(OPCODE_MASK | Flag.RD)  # opcode and RD, as the query had them
_COPIED_BYTE2 = _COPIED >> 8
_QR_BYTE2 = int(Flag.QR) >> 8
_CLASS_IN = int(Rclass.IN)
_QUESTION_NAME = b"\xc0\x0c"  # pointer to offset 12: the question's name
_OPT_1232 = b"\x00" + struct.pack("!HHIH", OPT, 1232, 0, 0)  # our EDNS: 1232-byte buffer (flag day 2020)


def header(head: QueryHead, rcode: int, answers: int = 0, authority: int = 0) -> bytes:
    """Reply header: the client's ID, QR/RA set, one question, our OPT when the client sent one."""
    flags = _QR_RA | head.flags & _COPIED | rcode
    return struct.pack("!HHHHHH", head.id, flags, 1, answers, authority, 1 if head.edns else 0)


def empty(head: QueryHead, rcode: int) -> bytes:
    """No records: NXDOMAIN/REFUSED/SERVFAIL without an SOA."""
    return header(head, rcode) + head.question + (_OPT_1232 if head.edns else b"")


def address(head: QueryHead, ip: str, ttl: int) -> bytes:
    """One A or AAAA record (by the address's family) for the question's name."""
    rdata = _packed(ip)
    rtype = A if len(rdata) == 4 else AAAA
    record = _QUESTION_NAME + struct.pack("!HHIH", rtype, _CLASS_IN, ttl, len(rdata)) + rdata
    return header(head, 0, answers=1) + head.question + record + (_OPT_1232 if head.edns else b"")


def negative(head: QueryHead, rcode: int, zone_labels: int, ttl: int) -> bytes:
    """NXDOMAIN or NODATA with a synthetic SOA, so stub resolvers cache the answer for `ttl`
    seconds only (RFC 2308). The SOA's owner is the last `zone_labels` labels of the question's
    name (the registrable domain), written as a pointer into the question."""
    owner = struct.pack("!H", 0xC000 | 12 + suffix_offset(head.question, zone_labels))
    rdata = _soa_rdata(ttl)
    record = owner + struct.pack("!HHIH", SOA, _CLASS_IN, ttl, len(rdata)) + rdata
    return header(head, rcode, authority=1) + head.question + record + (_OPT_1232 if head.edns else b"")


def header_only(packet: bytes, rcode: int) -> bytes | None:
    """A bare reply to a packet we could not (or would not) read; None if it is not even a query
    header. Needs no parse: the ID, opcode and RD are copied from the first bytes."""
    if len(packet) < 12 or packet[2] & _QR_BYTE2:
        return None
    flags = _QR_RA | (packet[2] & _COPIED_BYTE2) << 8 | rcode
    return packet[:2] + struct.pack("!HHHHH", flags, 0, 0, 0, 0)


def truncated(reply: bytes, query: DNSRecord) -> bytes:
    """The reply cut to header and question with TC set, so the client retries over TCP."""
    header = DNSRecord.parse(reply).header
    header.tc = 1
    out = DNSRecord(header=header, q=query.q)
    if any(rr.rtype == OPT for rr in query.ar):
        out.add_ar(EDNS0(udp_len=1232))
    return bytes(out.pack())


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
