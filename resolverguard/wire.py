"""Reading DNS bytes (`replies` writes them), and the one home of the protocol's numbers.

The numbers are IntEnums in dnspython's `rcode.py` style, with module-level aliases taken from
them (`SERVFAIL = int(Rcode.SERVFAIL)`): the hot path compares plain ints, as before, and pays no
enum attribute lookup per query, while the numbers are written in one place.

Reading a query's header and question straight from the wire:

A full dnslib parse costs tens of microseconds per query; the serving path needs only the ID,
flags, the one question and the client's EDNS settings. `parse_query` reads exactly that and
answers None for anything unusual (several questions, compression in the question, records other
than one OPT): those go through dnslib's parser, which then decides between an answer and FORMERR.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from enum import IntEnum
from typing import NamedTuple

from dnslib import DNSBuffer, DNSError, DNSRecord


class Rcode(IntEnum):
    """Response codes (RFC 1035, 2136), the low 4 bits of header byte 3."""

    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    YXDOMAIN = 6
    YXRRSET = 7
    NXRRSET = 8
    NOTAUTH = 9
    NOTZONE = 10


class Rtype(IntEnum):
    """The record types this package reads or writes itself (the query log names any type)."""

    A = 1
    SOA = 6
    HINFO = 13
    AAAA = 28
    OPT = 41
    ANY = 255


class Rclass(IntEnum):
    IN = 1


class Opcode(IntEnum):
    QUERY = 0
    IQUERY = 1
    STATUS = 2
    NOTIFY = 4
    UPDATE = 5


class Flag(IntEnum):
    """Header flag bits in the 16-bit flags word (bytes 2-3); `>> 8` gives the bit within byte 2."""

    QR = 0x8000
    AA = 0x0400
    TC = 0x0200
    RD = 0x0100
    RA = 0x0080
    AD = 0x0020
    CD = 0x0010


OPCODE_MASK = 0x7800  # the opcode's four bits in the flags word
RCODE_MASK = 0x000F
EDNS_DO = 0x8000  # DNSSEC OK, in the OPT record's TTL field

# Aliases the hot path uses: plain ints taken from the enums (one global lookup; an int compared
# with an IntEnum member costs ~5 ns more, as Python tries the subclass's reflected method first).
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = (int(code) for code in list(Rcode)[:6])
A, SOA, AAAA, OPT = int(Rtype.A), int(Rtype.SOA), int(Rtype.AAAA), int(Rtype.OPT)
HINFO, ANY = int(Rtype.HINFO), int(Rtype.ANY)
OPCODE_QUERY = int(Opcode.QUERY)
_QR = int(Flag.QR)
_RCODE_NAMES = tuple(Rcode(code).name if code in Rcode._value2member_map_ else str(code) for code in range(16))


def rcode_name(message: bytes) -> str:
    """The response code of a DNS message, by name ("NOERROR", "NXDOMAIN", ...)."""
    return _RCODE_NAMES[message[3] & 0x0F]


_PRINTABLE = frozenset(range(33, 127)) - {ord("."), ord("\\")}
_PRINTABLE_BYTES = bytes(sorted(_PRINTABLE))  # for bytes.translate: what is left is not printable


class QueryHead(NamedTuple):
    """The head of a query, read once per datagram. A NamedTuple, not a frozen dataclass (as
    `Record`): a frozen dataclass's `__init__` sets each of its ten fields through
    `object.__setattr__`, ~0.8 us against ~0.2 here, on every query, hits included."""

    id: int
    flags: int  # the 16 header flag bits as sent
    qname: str  # presentation form with the trailing dot, as dnslib writes it
    qtype: int
    qclass: int
    question: bytes  # the question section as sent (name, type, class), echoed in our answers
    edns: bool
    udp_size: int  # the client's advertised EDNS buffer size (512 without EDNS)
    do: bool  # DNSSEC OK
    edns_version: int = 0  # anything but 0 is answered BADVERS (RFC 6891 6.1.3)

    @property
    def is_response(self) -> bool:
        return bool(self.flags & _QR)

    @property
    def opcode(self) -> int:
        return (self.flags & OPCODE_MASK) >> 11


def label_text(label: bytes) -> str:
    """A label with unusual bytes in presentation form (`\\ddd` escapes), as dnslib writes it."""
    return "".join(chr(b) if b in _PRINTABLE else f"\\{b:03d}" for b in label)


def parse_query_python(packet: bytes) -> QueryHead | None:
    """The head of a plain one-question query, or None when it needs the full parser: in Python,
    what `parse_query` is where the C module is not built (and what tests/test_wirec.py holds it to)."""
    if len(packet) < 17:
        return None
    qid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", packet)
    if qd != 1 or an or ns or ar > 1:
        return None
    size, at, labels = len(packet), 12, []
    while True:
        if at >= size:
            return None
        length = packet[at]
        if length == 0:
            at += 1
            break
        if length > 63:  # compression pointer or a label too long: let the full parser decide
            return None
        end = at + 1 + length
        if end > size or end - 12 > 254:  # past the packet, or a name over 255 octets
            return None
        label = packet[at + 1 : end]
        if label.translate(None, _PRINTABLE_BYTES):  # unusual bytes (checked in C): `\\ddd` escapes
            labels.append(label_text(label))  # any byte is legal in a label (RFC 2181 11); dnslib disagrees
        else:
            labels.append(label.decode("ascii"))
        at = end
    if at + 4 > len(packet):
        return None
    qtype, qclass = struct.unpack_from("!HH", packet, at)
    question_end = at + 4
    edns, udp_size, do, version = False, 512, False, 0
    if ar:
        # One OPT record: root name, type 41, class = UDP size, TTL = ext-rcode/version/flags.
        if packet[question_end : question_end + 1] != b"\x00" or question_end + 11 > len(packet):
            return None
        rtype, rclass, ttl, rdlength = struct.unpack_from("!HHIH", packet, question_end + 1)
        if rtype != OPT or question_end + 11 + rdlength != len(packet):
            return None
        edns, udp_size, do, version = True, rclass, bool(ttl & EDNS_DO), ttl >> 16 & 0xFF
    elif question_end != len(packet):
        return None
    qname = ".".join(labels) + "."
    return QueryHead(qid, flags, qname, qtype, qclass, packet[12:question_end], edns, udp_size, do, version)


try:  # every query's first read, hits included: ~2-3% of a never-seen name's samples in Python (#17)
    from resolverguard._wirec import parse_query as _parse_query_c
except ImportError:  # no C compiler at install time (setup.py)
    _parse_query_c = None

parse_query: Callable[[bytes], QueryHead | None] = (
    parse_query_python if _parse_query_c is None else functools.partial(_parse_query_c, QueryHead)
)
"""The head of a plain one-question query, or None when it needs the full parser (`parse_query_python`,
in C where `resolverguard/_wirec.c` is built: the same checks, the same fields)."""


def head_of(record: DNSRecord, packet: bytes) -> QueryHead:
    """The same head, from a message dnslib parsed (the slow path for unusual queries)."""
    opt = next((rr for rr in record.ar if rr.rtype == OPT), None)
    flags = struct.unpack_from("!H", packet, 2)[0]
    q, buffer = record.q, DNSBuffer()
    q.pack(buffer)  # unusual queries (compressed question): the question re-encoded, once
    return QueryHead(
        record.header.id,
        flags,
        str(q.qname),
        int(q.qtype),
        int(q.qclass),
        bytes(buffer.data),
        opt is not None,
        int(opt.rclass) if opt is not None else 512,
        bool(opt is not None and opt.ttl & EDNS_DO),
        int(opt.ttl) >> 16 & 0xFF if opt is not None else 0,
    )


IGNORE = -1  # what `read_unusual` answers for a message that is not a query: stay silent


def valid_qname(query: DNSRecord) -> bool:
    """RFC 1035 limits that dnslib's parser does not enforce: labels <= 63 octets, name <= 255."""
    labels = query.q.qname.label
    return all(0 < len(label) <= 63 for label in labels) and sum(len(x) + 1 for x in labels) + 1 <= 255


def read_unusual(packet: bytes) -> tuple[QueryHead, DNSRecord] | int:
    """A query `parse_query` left to the full parser: its head and dnslib's parse, or the rcode of
    the bare reply it gets (FORMERR, NOTIMP), or IGNORE for a response."""
    try:
        parsed = DNSRecord.parse(packet)
    except (DNSError, ValueError, IndexError, struct.error, UnicodeDecodeError, TypeError):
        return FORMERR
    if parsed.header.qr:
        return IGNORE
    if sum(rr.rtype == OPT for rr in parsed.ar) > 1 or any(rr.rtype == OPT for rr in parsed.rr + parsed.auth):
        return FORMERR  # one OPT at most, in the additional section only (RFC 6891 6.1.1)
    if len(parsed.questions) == 1 and valid_qname(parsed):
        return head_of(parsed, packet), parsed
    return NOTIMP if parsed.header.opcode != OPCODE_QUERY else FORMERR


# -- whole messages: what an upstream answered -----------------------------------------------------

Name = tuple[bytes, ...]  # labels, lowercased, without the root: (b"www", b"example", b"com")
CNAME, DNAME, NS, MX, SRV, RRSIG, NSEC, NSEC3 = 5, 39, 2, 15, 33, 46, 47, 50
_MAX_POINTERS = 64  # a name needs at most 127 labels; more jumps than this is a loop
ANSWER, AUTHORITY, ADDITIONAL = 0, 1, 2


def read_name(wire: bytes, at: int, seen: dict[int, Name] | None = None) -> tuple[Name, int]:
    """The name at `at` (compression pointers followed, backwards only) and the offset after it.
    Raises ValueError (or IndexError) for a name that runs off the message, loops or is too long.
    `seen`: names already read in this message by offset; most owners are one pointer to one."""
    labels: list[bytes] = []
    end, jumps, size = -1, 0, 0
    while True:
        length = wire[at]
        if length >= 0xC0:
            target = (length & 0x3F) << 8 | wire[at + 1]
            if target >= at or jumps >= _MAX_POINTERS:
                raise ValueError("compression pointer forward or in a loop")
            if end < 0:
                end = at + 2
            if seen is not None and target in seen:
                rest = seen[target]
                if not size:  # a bare pointer (most owners): `rest` was checked when it was read
                    return rest, end
                if size + sum(len(x) + 1 for x in rest) > 254:
                    raise ValueError("name over 255 octets")
                return tuple(labels) + rest, end
            at, jumps = target, jumps + 1
            continue
        if length > 63:
            raise ValueError("reserved label type")
        if length == 0:
            return tuple(labels), end if end >= 0 else at + 1
        size += length + 1
        if size > 254:
            raise ValueError("name over 255 octets")
        label = wire[at + 1 : at + 1 + length]
        if len(label) != length:
            raise IndexError("label past the end")
        labels.append(label.lower())
        at += 1 + length


def within(name: Name, zone: Name) -> bool:
    """Is `name` at or below `zone`?"""
    return len(zone) <= len(name) and name[len(name) - len(zone) :] == zone


class Record(NamedTuple):
    """Where one resource record sits in a message. A NamedTuple, not a frozen dataclass: one is
    made per record of every upstream answer, and it is built in a third of the time."""

    section: int  # ANSWER, AUTHORITY or ADDITIONAL
    start: int  # its owner name
    owner: Name
    rtype: int
    ttl: int
    ttl_at: int  # offset of its 4-byte TTL field
    rdata_at: int
    end: int  # offset just after it


class Message(NamedTuple):
    """A message read in full: the question's end and every record, in order. A NamedTuple for
    the reason `QueryHead` is one: a miss makes two (`read_message`, `replies._ours`)."""

    question_end: int
    records: tuple[Record, ...]
    qname: Name = ()  # the question's name

    def target(self, wire: bytes, record: Record) -> Name | None:
        """The name a CNAME/DNAME/NS/MX/SRV record points to."""
        skip = _TARGET_AT.get(record.rtype)
        return None if skip is None else read_name(wire, record.rdata_at + skip)[0]


_TARGET_AT = {CNAME: 0, DNAME: 0, NS: 0, MX: 2, SRV: 6}  # where in the rdata a record's target name starts


def read_message(wire: bytes) -> Message | None:
    """Every record of a one-question message, or None when it is malformed: a record cut short,
    a name that loops or runs off the end, counts that do not match, bytes left over (issue #14: a
    reply cut mid-record used to reach the client byte for byte)."""
    try:
        qd, an, ns, ar = struct.unpack_from("!HHHH", wire, 4)
        if qd != 1:
            return None
        qname, at = read_name(wire, 12)
        seen = {12: qname}
        at += 4
        question_end, records = at, []
        for index in range(an + ns + ar):
            start = at
            owner, at = read_name(wire, at, seen)
            if wire[start] < 0xC0:
                seen[start] = owner
            rtype, _, ttl, rdlength = struct.unpack_from("!HHIH", wire, at)
            end = at + 10 + rdlength
            if end > len(wire):
                return None
            section = ANSWER if index < an else AUTHORITY if index < an + ns else ADDITIONAL
            records.append(Record(section, start, owner, rtype, ttl, at + 4, at + 10, end))
            at = end
        if at != len(wire) or question_end > len(wire):
            return None
        return Message(question_end, tuple(records), qname)
    except (IndexError, ValueError, struct.error):
        return None
