"""The fast query reader agrees with dnslib on every packet it accepts, and declines the rest."""

from __future__ import annotations

import struct

from dnslib import EDNS0, DNSError, DNSRecord
from fuzzing import CRAFTED, packets
from hypothesis import given, settings

from resolverguard.wire import parse_query


def test_plain_and_edns_queries() -> None:
    q = DNSRecord.question("WwW.Example.com", "AAAA")
    head = parse_query(q.pack())
    assert head is not None and (head.qname, head.qtype, head.edns, head.udp_size) == (
        "WwW.Example.com.",
        28,
        False,
        512,
    )
    q.add_ar(EDNS0(udp_len=1400, flags="do"))
    head = parse_query(q.pack())
    assert head is not None and (head.edns, head.udp_size, head.do) == (True, 1400, True)


@settings(max_examples=1500, deadline=None)
@given(packets)
def test_agrees_with_dnslib_or_declines(packet: bytes) -> None:
    head = parse_query(packet)
    if head is None:
        return
    try:
        record = DNSRecord.parse(packet)
    except DNSError:  # dnslib takes UTF-8 labels only; any byte is legal in a label (RFC 2181 11)
        import dns.name

        name, used = dns.name.from_wire(packet, 12)
        assert dns.name.from_text(head.qname) == name  # our `\\ddd` escapes name the same bytes
        assert (head.qtype, head.qclass) == struct.unpack_from("!HH", packet, 12 + used)
        return
    assert (record.header.id, str(record.q.qname), record.q.qtype, record.q.qclass) == (
        head.id,
        head.qname,
        head.qtype,
        head.qclass,
    )
    assert len(record.questions) == 1 and record.reply().pack()  # we can answer it


def test_crafted_packets_never_crash_it() -> None:
    for packet in CRAFTED:
        parse_query(packet)


def test_name_length_limit_is_255_octets() -> None:
    def query_for(labels: list[int]) -> bytes:
        name = b"".join(bytes([n]) + b"a" * n for n in labels) + b"\x00"
        return b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + name + b"\x00\x01\x00\x01"

    longest = [63, 63, 63, 61]  # 4 length octets + 250 + root = 255
    head = parse_query(query_for(longest))
    assert head is not None and head.question == query_for(longest)[12:]
    assert parse_query(query_for([63, 63, 63, 62])) is None  # 256 octets: the full parser answers FORMERR
    assert parse_query(query_for([64])) is None


def test_protocol_numbers_agree_with_dnspython_and_dnslib() -> None:
    """The one set of IntEnums carries the same numbers and names as the libraries we test with."""
    import dns.flags
    import dns.opcode
    import dns.rcode
    import dns.rdatatype
    from dnslib import RCODE

    from resolverguard.wire import Flag, Opcode, Rcode, Rtype, rcode_name

    assert all(dns.rcode.Rcode[m.name] == m for m in Rcode)
    assert all(dns.rdatatype.RdataType[m.name] == m for m in Rtype)
    assert all(dns.opcode.Opcode[m.name] == m for m in Opcode)
    assert all(dns.flags.Flag[m.name] == m for m in Flag)
    assert [rcode_name(bytes([0, 0, 0x80, code])) for code in range(16)] == [
        str(RCODE.get(code, str(code))) for code in range(16)
    ]


@settings(max_examples=500, deadline=None)
@given(packets)
def test_read_message_never_raises(packet: bytes) -> None:
    from resolverguard.wire import read_message

    read_message(packet)  # None or a message: never an exception, whatever the bytes


def _answer(*records, auth=(), additional=()):
    from dnslib import RR, DNSRecord

    reply = DNSRecord.question("www.example.org", "A").reply()
    for owner, rtype, rdata in records:
        reply.add_answer(RR(owner, rtype, rdata=rdata, ttl=300))
    for owner, rtype, rdata in auth:
        reply.add_auth(RR(owner, rtype, rdata=rdata, ttl=300))
    for owner, rtype, rdata in additional:
        reply.add_ar(RR(owner, rtype, rdata=rdata, ttl=300))
    return bytes(reply.pack())


def test_a_reply_cut_anywhere_is_malformed() -> None:
    from dnslib import QTYPE, A

    from resolverguard.wire import read_message

    wire = _answer(("www.example.org", QTYPE.A, A("192.0.2.1")), ("www.example.org", QTYPE.A, A("192.0.2.2")))
    assert read_message(wire) is not None
    assert all(read_message(wire[:cut]) is None for cut in range(len(wire)))
    assert read_message(wire + b"\x00") is None  # bytes left over


def test_forwarded_answer_keeps_the_chain_and_the_zone_and_drops_the_rest() -> None:
    import dns.message
    from dnslib import CNAME, NS, QTYPE, SOA, A

    from resolverguard.replies import forwarded

    soa = SOA("ns.example.org", "h.example.org", (1, 2, 3, 4, 5))
    wire = _answer(
        ("www.example.org", QTYPE.CNAME, CNAME("edge.cdn.example.net")),
        ("victim.com", QTYPE.A, A("6.6.6.6")),
        ("edge.cdn.example.net", QTYPE.A, A("192.0.2.7")),
        auth=[("example.org", QTYPE.SOA, soa), ("com", QTYPE.NS, NS("ns.victim.com")), ("org", QTYPE.NS, NS("a0.org"))],
        additional=[("a0.org", QTYPE.A, A("192.0.2.53")), ("ns.victim.com", QTYPE.A, A("6.6.6.6"))],
    )
    head = parse_query(bytes(DNSRecord.question("www.example.org", "A").pack()))
    assert head is not None
    out = dns.message.from_wire(forwarded(wire, head))
    kept = sorted(f"{rr.name} {rr.rdtype.name}" for sec in (out.answer, out.authority, out.additional) for rr in sec)
    assert kept == sorted(
        [
            "www.example.org. CNAME",
            "edge.cdn.example.net. A",
            "example.org. SOA",
            "org. NS",
            "a0.org. A",
        ]
    )
