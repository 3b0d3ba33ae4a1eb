"""Packet generators for fuzzing the resolver: random bytes, mutated valid queries and the classic
malformed cases (compression loops, bad label lengths, lying counts, non-LDH and non-UTF-8 names)."""

from __future__ import annotations

import struct

from hypothesis import strategies as st

HEADER = struct.Struct("!HHHHHH")


def query_packet(
    labels: list[bytes], qtype: int = 1, qdcount: int = 1, flags: int = 0x0100, extra: bytes = b""
) -> bytes:
    name = b"".join(bytes([len(label) & 0xFF]) + label for label in labels) + b"\x00"
    return HEADER.pack(0x1234, flags, qdcount, 0, 0, 0) + name + struct.pack("!HH", qtype, 1) + extra


CRAFTED = [
    b"",
    b"\x00",
    HEADER.pack(1, 0x0100, 1, 0, 0, 0),  # question count but no question
    HEADER.pack(1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",  # pointer to itself
    HEADER.pack(1, 0x0100, 1, 0, 0, 0) + b"\x01a\xc0\x0e\x00\x01\x00\x01",  # pointer loop a->a
    HEADER.pack(1, 0x0100, 1, 0, 0, 0) + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",  # label 64
    HEADER.pack(1, 0x0100, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF) + b"\x00\x00\x01\x00\x01",  # lying counts
    HEADER.pack(1, 0x0100, 2, 0, 0, 0) + b"\x00\x00\x01\x00\x01" * 2,  # two questions
    HEADER.pack(1, 0x8100, 1, 0, 0, 0) + b"\x00\x00\x01\x00\x01",  # a response, not a query
    HEADER.pack(1, 0x2100, 1, 0, 0, 0) + b"\x00\x00\x06\x00\x01",  # opcode UPDATE
    query_packet([b"b`eigjbgfrpq", b"bazaar"]),  # non-LDH as bazarbackdoor_buggy emits
    query_packet([b"\xff\xfe\xfd", b"com"]),  # not UTF-8
    query_packet([b"a" * 63] * 4 + [b"com"]),  # longer than 255 octets
    query_packet([b"ok", b"example", b"com"], qtype=255),  # ANY
    query_packet([b"x", b"com"], extra=b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00"),  # EDNS in question?
    b"\x12\x34" + b"\xff" * 10,
    bytes(range(256)) * 8,
]


def mutate(packet: bytes, positions: list[int], values: list[int], cut: int | None) -> bytes:
    data = bytearray(packet)
    for pos, val in zip(positions, values, strict=False):
        if data:
            data[pos % len(data)] = val
    return bytes(data[:cut] if cut is not None else data)


label = st.binary(min_size=0, max_size=70)
valid_ish = st.builds(
    query_packet,
    st.lists(label, min_size=0, max_size=6),
    st.integers(0, 65535),
    st.integers(0, 3),
    st.integers(0, 0xFFFF),
)
mutated = st.builds(
    mutate,
    valid_ish,
    st.lists(st.integers(0, 300), max_size=6),
    st.lists(st.integers(0, 255), max_size=6),
    st.none() | st.integers(0, 300),
)
packets = st.one_of(st.binary(max_size=600), valid_ish, mutated, st.sampled_from(CRAFTED))
