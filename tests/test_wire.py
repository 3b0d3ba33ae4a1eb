"""The fast query reader agrees with dnslib on every packet it accepts, and declines the rest."""

from __future__ import annotations

from dnslib import EDNS0, DNSRecord
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
    record = DNSRecord.parse(packet)  # must not raise: we only accept what dnslib can answer
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
