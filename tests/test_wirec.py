"""The upstream answer read in C (resolverguard/_wirec.c) against the Python it replaces
(`replies._forwarded_read`): on every answer, malformed or not, the C code gives the same bytes and
records, the same None, or hands the answer back (False) to the Python code; never anything else,
and never where the Python code would not have answered plainly. A security check (the bailiwick,
issue #14): any difference is a bug."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.rrset
import pytest
from fuzzing import packets
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from resolverguard import replies
from resolverguard.wire import Message, QueryHead, Record, parse_query_python

wirec = pytest.importorskip("resolverguard._wirec")

_NAMES = [
    "www.example.com.",
    "WWW.Example.COM.",
    "example.com.",
    "com.",
    ".",
    "cdn.example.net.",
    "example.net.",
    "ns1.example.com.",
    "mail.example.com.",
    "victim.org.",
    "a.b.www.example.com.",
]
_RDATA = {
    "A": "192.0.2.1",
    "AAAA": "2001:db8::1",
    "CNAME": "cdn.example.net.",
    "DNAME": "example.net.",
    "NS": "ns1.example.com.",
    "MX": "10 mail.example.com.",
    "SRV": "1 2 53 ns1.example.com.",
    "SOA": "ns. host. 1 2 3 4 5",
    "NSEC": "z.example.com. A",
    "RRSIG": "A 8 2 300 20300101000000 20200101000000 1 example.com. AAAA",
    "TXT": '"x"',
}
_TTLS = [0, 300, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


def head(flags: int, edns: bool, do: bool) -> QueryHead:
    return QueryHead(7, flags, "www.example.com.", 1, 1, b"", edns, 1232 if edns else 512, do)


def check(wire: bytes, query: QueryHead) -> object:
    """The C result, after holding it to the Python one."""
    got = wirec.forwarded_read(wire, query.flags, query.edns, query.do, Record, Message)
    try:
        want = replies._forwarded_read(wire, query)
    except Exception:  # noqa: BLE001 - whatever the Python code raises, C must hand it back
        assert got is False
        return got
    if got is False:
        return got
    assert got == want
    if got is not None:
        out, message = got
        assert type(out) is bytes and type(message) is Message
        assert all(type(r) is Record for r in message.records)
        assert all(type(label) is bytes for r in message.records for label in r.owner)
    return got


def built(records: list[tuple[str, str, str, int]], qname: str, flags: int, edns: int) -> bytes:
    query = dns.message.make_query(qname, "A")
    reply = dns.message.make_response(query)
    reply.flags = flags & 0xFFFF | dns.flags.QR
    if edns >= 0:
        reply.use_edns(0, ednsflags=dns.flags.DO if edns else 0, payload=4096)
    for section, owner, rtype, _ in records:
        rrset = dns.rrset.from_text(owner, 300, "IN", rtype, _RDATA[rtype])
        getattr(reply, section).append(rrset)
    wire = bytearray(reply.to_wire())
    # the TTLs dnspython will not write (2^31 and more): patched into each record in turn
    message = replies.read_message(bytes(wire))
    assert message is not None
    for r, (_, _, _, ttl) in zip(message.records, records, strict=False):
        wire[r.ttl_at : r.ttl_at + 4] = struct.pack("!I", ttl)
    return bytes(wire)


records = st.lists(
    st.tuples(
        st.sampled_from(["answer", "authority", "additional"]),
        st.sampled_from(_NAMES),
        st.sampled_from(sorted(_RDATA)),
        st.sampled_from(_TTLS),
    ),
    max_size=8,
)
heads = st.builds(head, st.integers(0, 0xFFFF), st.booleans(), st.booleans())


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example([("answer", "www.example.com.", "A", 300)], "www.example.com.", 0, -1, head(0x0100, False, False))
@example([("answer", "www.example.com.", "A", 0x80000000)], "www.example.com.", 0, 1, head(0x0110, True, True))
@given(records, st.sampled_from(_NAMES[:4]), st.integers(0, 0xFFFF), st.integers(-1, 1), heads)
def test_c_reads_built_answers_as_python_does(
    recs: list[tuple[str, str, str, int]], qname: str, flags: int, edns: int, query: QueryHead
) -> None:
    check(built(recs, qname, flags, edns), query)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records,
    st.integers(-1, 1),
    heads,
    st.lists(st.tuples(st.integers(0, 600), st.integers(0, 255)), max_size=4),
    st.integers(0, 600),
    st.binary(max_size=8),
)
def test_c_reads_damaged_answers_as_python_does(
    recs: list[tuple[str, str, str, int]],
    edns: int,
    query: QueryHead,
    changes: list[tuple[int, int]],
    cut: int,
    tail: bytes,
) -> None:
    """Bytes overwritten (compression pointers among them: 0xC0-0xFF), cut short, or added."""
    wire = bytearray(built(recs, "www.example.com.", 0x8180, edns))
    for at, value in changes:
        if at < len(wire):
            wire[at] = value
    check(bytes(wire[: max(cut, 12)]) if cut < len(wire) else bytes(wire) + tail, query)


@settings(max_examples=2000, deadline=None)
@given(st.binary(min_size=0, max_size=200), heads)
@example(b"\x00" * 11, head(0, False, False))
@example(b"\x00\x07\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01", head(0, True, False))
def test_c_reads_random_bytes_as_python_does(tail: bytes, query: QueryHead) -> None:
    """A valid header (one question) before random bytes, and random bytes alone."""
    check(b"\x00\x07\x81\x80\x00\x01" + tail[:6] + tail[6:], query)
    check(tail, query)


def _pointer(at: int) -> bytes:
    return struct.pack("!H", 0xC000 | at)


@pytest.mark.parametrize(
    "owner",
    [
        _pointer(12),  # the question's name
        _pointer(16),  # into its middle ("example.com")
        b"\x03abc" + _pointer(12),  # a label, then the question
        _pointer(200),  # forward
        b"\x03abc" + _pointer(29),  # to itself: a loop
        b"\x01" + _pointer(12)[:1],  # cut
        b"\x40abc\x00",  # reserved label type
        b"\x00",
    ],
)
@pytest.mark.parametrize("edns", [False, True])
def test_c_follows_compression_pointers_as_python_does(owner: bytes, edns: bool) -> None:
    question = b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"  # 12..28
    record = owner + struct.pack("!HHIH", 1, 1, 300, 4) + bytes([192, 0, 2, 1])
    wire = struct.pack("!HHHHHH", 7, 0x8180, 1, 1, 0, 0) + question + record
    check(wire, head(0x0100, edns, False))


def test_a_long_chain_of_pointers_and_many_records() -> None:
    question = b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"
    record = _pointer(12) + struct.pack("!HHIH", 1, 1, 300, 4) + bytes([192, 0, 2, 1])
    for count in (1, 64, 128, 129, 300):
        wire = struct.pack("!HHHHHH", 7, 0x8180, 1, count, 0, 0) + question + record * count
        got = check(wire, head(0x0100, True, False))
        assert (got is False) == (count > 128)  # more than 128 records: Python's turn
    # an owner that is a chain of 70 pointers, each to the one before it
    chain = bytearray(struct.pack("!HHHHHH", 7, 0x8180, 1, 1, 0, 0) + question)
    chain += _pointer(12)
    for _ in range(70):
        chain += _pointer(len(chain) - 2)
    bad = bytes(chain) + struct.pack("!HHIH", 1, 1, 300, 0)
    assert check(bad, head(0, False, False)) is None


def test_the_usual_answers_are_read_in_c() -> None:
    """What an upstream mostly sends (an address with NS and glue, a CNAME chain, a negative answer
    with its SOA, EDNS or not) is decided in C, not handed back."""
    cases = [
        [
            ("answer", "www.example.com.", "A", 300),
            ("authority", ".", "NS", 300),
            ("additional", "ns1.example.com.", "A", 5),
        ],
        [("answer", "www.example.com.", "CNAME", 300), ("answer", "cdn.example.net.", "A", 300)],
        [("authority", "example.com.", "SOA", 300)],
        [("answer", "www.example.com.", "MX", 300), ("additional", "mail.example.com.", "A", 300)],
    ]
    for recs in cases:
        for edns in (-1, 0, 1):
            got = check(built(recs, "www.example.com.", 0x8580, edns), head(0x0110, edns >= 0, edns == 1))
            assert isinstance(got, tuple), recs


def test_out_of_bailiwick_records_are_left_to_python_and_stripped() -> None:
    recs = [("answer", "www.example.com.", "A", 300), ("answer", "victim.org.", "A", 300)]
    wire = built(recs, "www.example.com.", 0x8180, -1)
    query = head(0x0100, False, False)
    assert wirec.forwarded_read(wire, query.flags, query.edns, query.do, Record, Message) is False
    read = replies.forwarded_read(wire, query)
    assert read is not None and len(read[1].records) == 1


# -- the query's head: wire.parse_query in C against wire.parse_query_python -----------------------


def same_head(packet: bytes) -> None:
    got = wirec.parse_query(QueryHead, packet)
    want = parse_query_python(packet)
    assert got == want, packet
    if got is not None:
        assert type(got) is QueryHead and [type(x) for x in got] == [type(x) for x in want]


@settings(max_examples=4000, deadline=None)
@given(packets)
@example(b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03a.b\x03com\x00\x00\x01\x00\x01")
@example(
    b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x00\x00\x01\x00\x01\x00\x00\x29\x04\xd0\x00\x01\x80\x00\x00\x00"
)
def test_c_reads_query_heads_as_python_does(packet: bytes) -> None:
    same_head(packet)
    same_head(packet + b"\x00")


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=63), max_size=6),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.booleans(),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=6),
)
def test_c_reads_built_queries_as_python_does(
    labels: list[bytes], flags: int, qtype: int, opt: bool, size: int, ttl: int, rdata: bytes
) -> None:
    """Any bytes in labels (escaped `\\ddd`), any flags and type, an OPT with any size, TTL (DO,
    version) and options."""
    name = b"".join(bytes([len(x)]) + x for x in labels) + b"\x00"
    packet = struct.pack("!HHHHHH", 0x1234, flags, 1, 0, 0, int(opt)) + name + struct.pack("!HH", qtype, 1)
    if opt:
        packet += b"\x00" + struct.pack("!HHIH", 41, size, ttl, len(rdata)) + rdata
    same_head(packet)
    for cut in range(12, len(packet)):
        same_head(packet[:cut])


def test_the_server_reads_queries_in_c_where_built() -> None:
    import resolverguard.wire as wire
    from resolverguard.steps import upstream

    assert wire.parse_query is not parse_query_python and wire.parse_query(b"") is None
    assert upstream.matches is not upstream.matches_python


# -- is it our answer: steps.upstream.matches in C against matches_python ---------------------------


@settings(max_examples=3000, deadline=None)
@given(
    st.binary(max_size=40),
    st.integers(0, 0xFFFF),
    st.binary(max_size=24),
    st.sampled_from([b"", b"\x00\x00", b"\x00\x01", b"\x00\x02", b"\x01\x01"]),
    st.booleans(),
)
@example(
    b"\x12\x34\x80\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03WwW\x00\x00\x01\x00\x01",
    0x1234,
    b"\x03www\x00\x00\x01\x00\x01",
    b"",
    False,
)
def test_c_matches_answers_as_python_does(answer: bytes, qid: int, question: bytes, count: bytes, same: bool) -> None:
    """Random bytes, and answers made to carry our ID, QR, a question count and (in any letter
    case) our question, or a cut of it."""
    from resolverguard.steps.upstream import matches_python

    made = answer[:2] if len(answer) >= 2 and not same else struct.pack("!H", qid)
    made += bytes([answer[2] | 0x80 if len(answer) > 2 else 0x80, answer[3] if len(answer) > 3 else 0])
    made += (count or answer[4:6]).ljust(2, b"\x00") + b"\x00" * 6 + question.swapcase()[: len(answer)] + answer
    for packet in (answer, made, made[: len(answer) % (len(made) + 1)]):
        assert wirec.matches(packet, qid, question) == matches_python(packet, qid, question), packet
