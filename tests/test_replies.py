"""Answers written straight onto the wire (resolverguard.replies), read back with dnspython."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from resolverguard import replies
from resolverguard.wire import (
    ADDITIONAL,
    ANSWER,
    AUTHORITY,
    CNAME,
    DNAME,
    MX,
    NS,
    NSEC,
    NSEC3,
    OPT,
    RRSIG,
    SRV,
    Message,
    QueryHead,
    parse_query,
    read_message,
    read_name,
    within,
)


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


def bailiwick_walk(wire: bytes, message: Message) -> list[bool]:
    """The bailiwick rule as first written (every record walked in three passes, the CNAME/DNAME
    chain to a fixed point): the reference the one-pass fast path must match exactly."""
    records = message.records
    chain, keep = {read_name(wire, 12)[0]}, [False] * len(records)
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
    zones, targets = set(), set()
    for i, r in enumerate(records):
        if r.section == AUTHORITY and r.rtype != OPT and any(within(n, r.owner) for n in chain):
            keep[i] = True
            zones.add(r.owner)
    for i, r in enumerate(records):
        if r.section == AUTHORITY and not keep[i] and r.rtype in (NSEC, NSEC3, RRSIG):
            keep[i] = any(within(r.owner, z) for z in zones)
        if keep[i] and r.rtype in (NS, MX, SRV):
            targets.add(message.target(wire, r))
    for i, r in enumerate(records):
        if r.section == ADDITIONAL:
            keep[i] = r.rtype == OPT or r.owner in targets or r.owner in chain
    return keep


_NAMES = ["www.example.com.", "example.com.", "com.", ".", "cdn.example.net.", "victim.com.", "ns1.example.com."]
_RECORDS = {
    "A": "192.0.2.1",
    "CNAME": "cdn.example.net.",
    "DNAME": "example.net.",
    "NS": "ns1.example.com.",
    "MX": "10 mail.example.com.",
    "SOA": "ns. host. 1 2 3 4 5",
    "NSEC": "z.example.com. A",
    "TXT": '"x"',
}


@settings(max_examples=1000, deadline=None, derandomize=True)
@example(
    [("answer", "www.example.com.", "A"), ("answer", "www.example.com.", "CNAME"), ("answer", "cdn.example.net.", "A")]
)
@example(
    [
        ("answer", "cdn.example.net.", "A"),
        ("answer", "www.example.com.", "CNAME"),
        ("additional", "cdn.example.net.", "A"),
    ]
)
@example([("answer", "example.com.", "DNAME"), ("authority", "example.com.", "NSEC"), ("authority", "com.", "SOA")])
@example([("answer", "www.example.com.", "MX"), ("authority", "com.", "NS"), ("additional", "ns1.example.com.", "A")])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["answer", "authority", "additional"]),
            st.sampled_from(_NAMES),
            st.sampled_from(sorted(_RECORDS)),
        ),
        max_size=8,
    )
)
def test_bailiwick_fast_path_keeps_exactly_what_the_full_walk_keeps(records: list[tuple[str, str, str]]) -> None:
    query = dns.message.make_query("www.example.com", "A")
    reply = dns.message.make_response(query)
    for section, owner, rtype in records:
        rrset = dns.rrset.from_text(owner, 300, "IN", rtype, _RECORDS[rtype])
        getattr(reply, section).append(rrset)
    wire = reply.to_wire()
    message = read_message(wire)
    assert message is not None
    assert replies.bailiwick(wire, message) == bailiwick_walk(wire, message)


def rich_answer(name: str = "www.example.com.") -> bytes:
    """An upstream answer with every kind of record `forwarded_read` walks: a CNAME chain, an MX,
    NS in the authority section with their addresses, and an OPT record."""
    query = dns.message.make_query(name, "A", use_edns=0)
    query.id = 4242
    answer = dns.message.make_response(query)
    answer.answer.append(dns.rrset.from_text(name, 300, "IN", "CNAME", "alias.example.com."))
    answer.answer.append(dns.rrset.from_text("alias.example.com.", 300, "IN", "A", "192.0.2.7"))
    answer.answer.append(dns.rrset.from_text(name, 300, "IN", "MX", "10 mail.example.com."))
    answer.authority.append(dns.rrset.from_text("example.com.", 300, "IN", "NS", "ns1.example.com."))
    answer.additional.append(dns.rrset.from_text("ns1.example.com.", 300, "IN", "A", "192.0.2.53"))
    return answer.to_wire()


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_a_damaged_upstream_answer_is_read_or_refused_never_raises(data: st.DataObject) -> None:
    """Bad input from an upstream is a malformed reply (the next upstream, or SERVFAIL), never an
    exception out of the query: bytes overwritten anywhere after the header's ID."""
    wire = bytearray(rich_answer())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(2, len(wire) - 1))
        wire[at] = data.draw(st.integers(0, 255))
    read = replies.forwarded_read(bytes(wire), head_for("www.example.com", use_edns=0))
    assert read is None or isinstance(read[0], bytes)


def test_a_pointing_record_whose_target_does_not_read_is_malformed() -> None:
    """An MX whose target is a forward compression pointer (found by a helper on main: ValueError)."""
    wire = bytearray(rich_answer())
    at = wire.index(b"\x04mail")  # the MX target's first label: make it a pointer past the end
    wire[at : at + 2] = b"\xff\xff"
    assert replies.forwarded_read(bytes(wire), head_for("www.example.com", use_edns=0)) is None


@pytest.mark.parametrize("edns", [-1, 0])
@pytest.mark.parametrize("native", [True, False])
def test_an_opt_record_outside_the_additional_section_is_malformed(edns: int, native: bool) -> None:
    """A question for the root, answered by an OPT record (owned by the root) in the answer section
    and no additional records (found by a helper on main: the additional count went negative and
    the query died of an OverflowError instead of failing over)."""
    query = dns.message.make_query(".", "NS")
    query.id = 4242
    wire = bytearray(dns.message.make_response(query).to_wire())
    wire[6:8] = (1).to_bytes(2, "big")  # ANCOUNT 1: the OPT below
    wire += b"\x00" + (41).to_bytes(2, "big") + (1232).to_bytes(2, "big") + bytes(6)
    assert replies.forwarded_read(bytes(wire), head_for(".", "NS", use_edns=edns), native=native) is None
