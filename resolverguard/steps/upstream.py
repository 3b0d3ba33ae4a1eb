"""Upstream step: forwards a query to the first upstream that answers, or SERVFAILs.

Guards against cache poisoning the way stub forwarders should: every upstream query gets a fresh
random ID and a fresh socket (so a fresh random source port), the UDP socket is connected (the
kernel drops datagrams from other sources), and a reply whose ID or question does not match is
ignored while we keep waiting. A truncated UDP reply is retried over TCP. The client's own packet
is forwarded with only the ID changed, so its EDNS options (buffer size, DO bit, cookies) pass on.
"""

from __future__ import annotations

import asyncio
import secrets
import struct
import time
from collections.abc import Sequence

from dnslib import RCODE, DNSError, DNSRecord

from resolverguard.chain import Reply, Request
from resolverguard.config import Endpoint
from resolverguard.errors import UpstreamError
from resolverguard.steps.block import empty_reply

_TC = 0x02  # in byte 2 of the header


def matches(answer: bytes, qid: int, query: DNSRecord) -> bool:
    """Is `answer` a reply to our query `qid` for the same question? (drop it if not)."""
    if len(answer) < 12 or struct.unpack("!H", answer[:2])[0] != qid or not answer[2] & 0x80:
        return False
    try:
        parsed = DNSRecord.parse(answer)
    except (DNSError, ValueError, IndexError, struct.error, UnicodeDecodeError):
        return False
    if len(parsed.questions) != 1:
        return bool(answer[3] & 0x0F) and not parsed.questions  # FORMERR/REFUSED may echo no question
    q, mine = parsed.q, query.q
    return (str(q.qname).lower(), q.qtype, q.qclass) == (str(mine.qname).lower(), mine.qtype, mine.qclass)


class _Reply(asyncio.DatagramProtocol):
    def __init__(self, qid: int, query: DNSRecord) -> None:
        self.qid, self.query = qid, query
        self.future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.future.done() and matches(data, self.qid, self.query):
            self.future.set_result(data)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable: fail over at once
        if not self.future.done():
            self.future.set_exception(exc)


class UpstreamForwarder:
    def __init__(self, servers: Sequence[Endpoint], timeout: float) -> None:
        if not servers:
            raise UpstreamError("no upstream servers configured")
        self.servers, self.timeout = tuple(servers), timeout

    async def resolve(self, packet: bytes, query: DNSRecord) -> bytes:
        """The first usable answer, with the client's ID restored; UpstreamError if none."""
        problems = []
        for server in self.servers:
            qid = secrets.randbits(16)
            wire = struct.pack("!H", qid) + packet[2:]
            try:
                answer = await asyncio.wait_for(self._udp(server, wire, qid, query), self.timeout)
                if answer[2] & _TC:
                    answer = await asyncio.wait_for(self._tcp(server, wire, qid, query), self.timeout)
                return packet[:2] + answer[2:]
            except (TimeoutError, OSError, UpstreamError, asyncio.IncompleteReadError) as err:
                problems.append(f"{server}: {type(err).__name__} {err}".strip())
        raise UpstreamError("; ".join(problems))

    async def _udp(self, server: Endpoint, wire: bytes, qid: int, query: DNSRecord) -> bytes:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Reply(qid, query), remote_addr=(server.host, server.port)
        )
        try:
            transport.sendto(wire)
            return await protocol.future
        finally:
            transport.close()

    async def _tcp(self, server: Endpoint, wire: bytes, qid: int, query: DNSRecord) -> bytes:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(struct.pack("!H", len(wire)) + wire)
            await writer.drain()
            while True:  # a well-behaved server sends one reply; skip anything that does not match
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                answer = await reader.readexactly(size)
                if matches(answer, qid, query):
                    return answer
        finally:
            writer.close()


class UpstreamStep:
    """The last link: whatever reaches it is forwarded."""

    def __init__(self, forwarder: UpstreamForwarder) -> None:
        self._forwarder = forwarder

    async def __call__(self, request: Request) -> Reply:
        started = time.perf_counter()
        try:
            answer = await self._forwarder.resolve(request.packet, request.query)
        except UpstreamError as err:
            request.error, request.upstream_rcode = f"upstream: {err}", "SERVFAIL"
            return bytes(empty_reply(request.query, RCODE.SERVFAIL).pack())
        finally:
            request.upstream_seconds = time.perf_counter() - started
        request.upstream_rcode = RCODE.get(answer[3] & 0x0F)
        return answer
