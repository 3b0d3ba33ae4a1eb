"""Answers written straight onto the wire (resolverguard.replies), read back with dnspython."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from resolverguard import replies
from resolverguard.wire import QueryHead, parse_query


def head_for(name: str, qtype: str = "A", **kw) -> QueryHead:
    query = dns.message.make_query(name, qtype, **kw)
    query.id = 4242
    head = parse_query(query.to_wire())
    assert head is not None
    return head


def read(wire: bytes) -> dns.message.Message:
    return dns.message.from_wire(wire)


@pytest.mark.parametrize(("qtype", "ip"), [("A", "10.1.2.3"), ("AAAA", "fd00::53")])
def test_address_answer_echoes_question_and_id(qtype: str, ip: str) -> None:
    head = head_for("WwW.XkQ3vbh7tz.com", qtype)
    reply = read(replies.address(head, ip, 42))
    assert reply.id == 4242 and reply.flags & dns.flags.QR and reply.flags & dns.flags.RA
    assert reply.flags & dns.flags.RD  # copied from the query
    assert reply.question[0].name.to_text() == "WwW.XkQ3vbh7tz.com."  # the client's own letter case
    (rrset,) = reply.answer
    assert rrset.rdtype == dns.rdatatype.from_text(qtype) and rrset.ttl == 42
    assert [rd.to_text() for rd in rrset] == [ip]
    assert reply.edns < 0  # the client sent no EDNS, so neither do we


@pytest.mark.parametrize(("labels", "owner"), [(2, "bad.example."), (3, "a.bad.example."), (0, "a.bad.example.")])
def test_negative_answer_carries_soa_of_the_zone(labels: int, owner: str) -> None:
    head = head_for("a.bad.example", "MX", use_edns=0, payload=4096)
    reply = read(replies.negative(head, dns.rcode.NXDOMAIN, labels, 60))
    assert reply.rcode() == dns.rcode.NXDOMAIN and not reply.answer
    (soa,) = reply.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa.name.to_text() == owner and soa.ttl == 60
    assert soa[0].minimum == 60 and soa[0].mname.to_text() == "sinkhole.resolverguard.invalid."
    assert reply.edns == 0 and reply.payload == 1232  # EDNS answered with EDNS


def test_empty_answer_for_each_rcode() -> None:
    head = head_for("example.com", "TXT")
    for rcode in (dns.rcode.REFUSED, dns.rcode.SERVFAIL, dns.rcode.NXDOMAIN):
        reply = read(replies.empty(head, rcode))
        assert reply.rcode() == rcode and not reply.answer and not reply.authority
        assert reply.question[0].rdtype == dns.rdatatype.TXT


def test_suffix_offset_walks_labels() -> None:
    question = b"\x01a\x03bad\x07example\x00\x00\x01\x00\x01"
    assert replies.suffix_offset(question, 2) == 2
    assert replies.suffix_offset(question, 1) == 6
    assert replies.suffix_offset(question, 3) == 0 and replies.suffix_offset(question, 9) == 0
