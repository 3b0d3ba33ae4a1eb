"""Reading a query's header and question straight from the wire.

A full dnslib parse costs tens of microseconds per query; the serving path needs only the ID,
flags, the one question and the client's EDNS settings. `parse_query` reads exactly that and
answers None for anything unusual (several questions, compression in the question, records other
than one OPT): those go through dnslib's parser, which then decides between an answer and FORMERR.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dnslib import QTYPE, RCODE, DNSBuffer, DNSRecord

# Numbers the hot path compares against: plain ints (dnslib's QTYPE/RCODE lookups run Python code).
OPT, SOA = 41, 6
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
OPCODE_QUERY = 0
_RCODE_NAMES = tuple(str(RCODE.get(code, str(code))) for code in range(16))


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
        return bool(self.flags & 0x8000)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0x0F


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
        edns, udp_size, do = True, rclass, bool(ttl & 0x8000)
    elif question_end != len(packet):
        return None
    qname = ".".join(labels) + "."
    return QueryHead(qid, flags, qname, qtype, qclass, packet[12:question_end], edns, udp_size, do)


def head_of(record: DNSRecord, packet: bytes) -> QueryHead:
    """The same head, from a message dnslib parsed (the slow path for unusual queries)."""
    opt = next((rr for rr in record.ar if rr.rtype == QTYPE.OPT), None)
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
        bool(opt is not None and opt.ttl & 0x8000),
    )
