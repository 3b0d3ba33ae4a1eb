"""PROXY protocol v2 headers: the real client of a query a load balancer (dnsdist) forwarded.

Behind dnsdist every query comes from dnsdist's address, yet the client watch, client groups,
access lists, rate limits and the query log are all about the client. dnsdist (`useProxyProtocol`)
puts a PROXY v2 header (HAProxy's binary format, www.haproxy.org/download/2.9/doc/proxy-protocol.txt)
in front of each UDP query and at the start of each TCP connection; we read the source address from
it, and only from the addresses the policy names in `proxy_protocol` (anyone else could claim any
address). The format is twelve fixed bytes, a version/command byte, a family byte, a length, the
addresses, then TLVs we skip. Hand-written: it is 16 bytes plus a struct unpack, and no
well-kept Python library parses it for a datagram server.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
FIXED = 16  # signature, version/command, family, length
_LOCAL, _PROXY = 0x20, 0x21  # version 2 with command LOCAL (the proxy's own traffic) or PROXY
_INET, _INET6 = 0x1, 0x2  # high nibble of the family byte (low nibble: stream or datagram)


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """`client`: the original source (None for LOCAL: the proxy speaking for itself, e.g. a health
    check); `size`: bytes the header takes before the DNS message."""

    client: tuple[str, int] | None
    size: int


def header_size(fixed: bytes) -> int | None:
    """The whole header's length from its first 16 bytes (TCP reads those first), or None."""
    if len(fixed) < FIXED or fixed[:12] != SIGNATURE or fixed[12] not in (_LOCAL, _PROXY):
        return None
    return FIXED + int(struct.unpack_from("!H", fixed, 14)[0])


def read_proxy_header(data: bytes) -> ProxyHeader | None:
    """The header at the start of `data`, or None when there is none or it is malformed."""
    size = header_size(data)
    if size is None or len(data) < size:
        return None
    if data[12] == _LOCAL:
        return ProxyHeader(None, size)
    family, body = data[13] >> 4, data[FIXED:size]
    if family == _INET and len(body) >= 12:
        return ProxyHeader((str(ipaddress.IPv4Address(body[:4])), struct.unpack_from("!H", body, 8)[0]), size)
    if family == _INET6 and len(body) >= 36:
        return ProxyHeader((str(ipaddress.IPv6Address(body[:16])), struct.unpack_from("!H", body, 32)[0]), size)
    return ProxyHeader(None, size)  # AF_UNSPEC or AF_UNIX: no address to take


def make_proxy_header(client: tuple[str, int], server: tuple[str, int], stream: bool = False) -> bytes:
    """A PROXY v2 header as dnsdist sends it (for tests and the bench)."""
    src, dst = ipaddress.ip_address(client[0]), ipaddress.ip_address(server[0])
    family = (_INET if src.version == 4 else _INET6) << 4 | (1 if stream else 2)
    body = src.packed + dst.packed + struct.pack("!HH", client[1], server[1])
    return SIGNATURE + bytes([_PROXY, family]) + struct.pack("!H", len(body)) + body
