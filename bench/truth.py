"""An upstream that answers like the Internet would for one trace: UDP and TCP on 127.0.0.1.

Why not bench/upstream.py: that one says yes to every name, and the client watch lives on the
difference between names that exist and names that do not. Here a name in `exists` gets an A record
with an address of its own (stable: a hash of the name, in 198.18.0.0/15, the benchmarking range);
any other name gets NXDOMAIN with a SOA in the authority section, so the resolver can cache the
negative answer (RFC 2308). Other query types of an existing name: NODATA with the SOA.
dnslib parses and writes; at the replay's few hundred queries a second that costs nothing that matters.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
import struct
from dataclasses import dataclass, field

from dnslib import QTYPE, RCODE, RR, SOA, A, DNSRecord

TTL = 300  # seconds, positive answers
NEGATIVE_TTL = 900  # the SOA's TTL and minimum: how long a resolver may cache the NXDOMAIN


def address_of(name: str) -> str:
    """The address a name resolves to: the same on every run and for every client."""
    digest = hashlib.sha256(name.rstrip(".").lower().encode()).digest()
    return str(ipaddress.IPv4Address(0xC6120000 + int.from_bytes(digest[:4], "big") % (1 << 17)))


def zone_of(name: str) -> str:
    """The zone whose SOA a NXDOMAIN carries: the name without its first label (the root for one)."""
    labels = name.rstrip(".").split(".")
    return ".".join(labels[1:]) + "." if len(labels) > 1 else "."


@dataclass
class TruthUpstream:
    """Answers from `exists`; counts what it was asked (`queries`)."""

    exists: frozenset[str]
    queries: int = 0
    port: int = 0
    _servers: list[object] = field(default_factory=list)

    def answer(self, data: bytes) -> bytes | None:
        try:
            query = DNSRecord.parse(data)
        except Exception:  # noqa: BLE001 - an upstream must survive whatever it is sent
            return None
        self.queries += 1
        reply = query.reply()
        qname = str(query.q.qname).rstrip(".").lower()
        if qname in self.exists and query.q.qtype == QTYPE.A:
            reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(address_of(qname)), ttl=TTL))
            return reply.pack()
        if qname not in self.exists:
            reply.header.rcode = RCODE.NXDOMAIN
        zone = zone_of(qname)
        soa = SOA(
            f"ns1.{zone}".rstrip(".") + ".", f"hostmaster.{zone}".rstrip(".") + ".", (1, 3600, 600, 86400, NEGATIVE_TTL)
        )
        reply.add_auth(RR(zone, QTYPE.SOA, rdata=soa, ttl=NEGATIVE_TTL))
        return reply.pack()

    async def start(self) -> int:
        """Binds UDP and TCP on one free port of 127.0.0.1 and serves them in the running loop."""
        loop = asyncio.get_running_loop()
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", self.port))
            port = udp.getsockname()[1]
            try:
                tcp = await asyncio.start_server(self._tcp, "127.0.0.1", port)
            except OSError:
                udp.close()
                if self.port:
                    raise
                continue
            transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp)
            self._servers = [tcp, transport]
            self.port = port
            return port
        raise OSError("no free UDP+TCP port pair")

    async def stop(self) -> None:
        tcp, udp = self._servers
        udp.close()  # type: ignore[attr-defined]
        tcp.close()  # type: ignore[attr-defined]
        await tcp.wait_closed()  # type: ignore[attr-defined]

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                reply = self.answer(await reader.readexactly(size))
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, upstream: TruthUpstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.upstream.answer(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)
