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

import struct
from dataclasses import dataclass
from enum import IntEnum

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
    AAAA = 28
    OPT = 41


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
OPCODE_QUERY = int(Opcode.QUERY)
_QR = int(Flag.QR)
_RCODE_NAMES = tuple(Rcode(code).name if code in Rcode._value2member_map_ else str(code) for code in range(16))


def rcode_name(message: bytes) -> str:
    """The response code of a DNS message, by name ("NOERROR", "NXDOMAIN", ...)."""
    return _RCODE_NAMES[message[3] & 0x0F]


_PRINTABLE = frozenset(range(33, 127)) - {ord("."), ord("\\")}
_PRINTABLE_BYTES = bytes(sorted(_PRINTABLE))  # for bytes.translate: what is left is not printable


@dataclass(frozen=True, slots=True)
class QueryHead:
    id: int
    flags: int  # the 16 header flag bits as sent
    qname: str  # presentation form with the trailing dot, as dnslib writes it
    qtype: int
    qclass: int
    question: bytes  # the question section as sent (name, type, class), echoed in our answers
    edns: bool
    udp_size: int  # the client's advertised EDNS buffer size (512 without EDNS)
    do: bool  # DNSSEC OK

    @property
    def is_response(self) -> bool:
        return bool(self.flags & _QR)

    @property
    def opcode(self) -> int:
        return (self.flags & OPCODE_MASK) >> 11


def label_text(label: bytes) -> str:
    """A label with unusual bytes in presentation form (`\\ddd` escapes), as dnslib writes it."""
    return "".join(chr(b) if b in _PRINTABLE else f"\\{b:03d}" for b in label)


def parse_query(packet: bytes) -> QueryHead | None:
    """The head of a plain one-question query, or None when it needs the full parser."""
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
        if label.translate(None, _PRINTABLE_BYTES):  # unusual bytes (checked in C): escaped, UTF-8 only
            try:
                label.decode("utf-8")  # dnslib, which parses unusual queries, accepts UTF-8 labels only
            except UnicodeDecodeError:
                return None
            labels.append(label_text(label))
        else:
            labels.append(label.decode("ascii"))
        at = end
    if at + 4 > len(packet):
        return None
    qtype, qclass = struct.unpack_from("!HH", packet, at)
    question_end = at + 4
    edns, udp_size, do = False, 512, False
    if ar:
        # One OPT record: root name, type 41, class = UDP size, TTL = ext-rcode/version/flags.
        if packet[question_end : question_end + 1] != b"\x00" or question_end + 11 > len(packet):
            return None
        rtype, rclass, ttl, rdlength = struct.unpack_from("!HHIH", packet, question_end + 1)
        if rtype != OPT or question_end + 11 + rdlength != len(packet):
            return None
        edns, udp_size, do = True, rclass, bool(ttl & EDNS_DO)
    elif question_end != len(packet):
        return None
    qname = ".".join(labels) + "."
    return QueryHead(qid, flags, qname, qtype, qclass, packet[12:question_end], edns, udp_size, do)


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
    if len(parsed.questions) == 1 and not parsed.header.qr and valid_qname(parsed):
        return head_of(parsed, packet), parsed
    if parsed.header.qr:
        return IGNORE
    return NOTIMP if parsed.header.opcode != OPCODE_QUERY else FORMERR
