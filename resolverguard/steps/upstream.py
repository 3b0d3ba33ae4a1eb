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
import socket
import struct
import time
from collections.abc import Sequence

from dnslib import RCODE

from resolverguard import replies
from resolverguard.chain import Reply, Request
from resolverguard.config import Endpoint
from resolverguard.errors import UpstreamError

_TC = 0x02  # in byte 2 of the header


def question_section(packet: bytes) -> bytes | None:
    """The raw question (name, type, class) of a one-question message, or None if malformed.
    The first name of a message is never compressed, so its bytes can be compared directly."""
    end = 12
    while end < len(packet):
        length = packet[end]
        if length == 0:
            return packet[12 : end + 5] if end + 5 <= len(packet) else None
        if length & 0xC0:
            return None
        end += length + 1
    return None


def matches(answer: bytes, qid: int, question: bytes) -> bool:
    """Is `answer` a reply to our query `qid` for the same question (name compared without case)?
    Anything else is dropped while we keep waiting: the cache-poisoning defence."""
    if len(answer) < 12 or answer[0] << 8 | answer[1] != qid or not answer[2] & 0x80:
        return False
    if answer[4:6] == b"\x00\x00":
        return bool(answer[3] & 0x0F)  # FORMERR/REFUSED/NOTIMP may echo no question
    return answer[4:6] == b"\x00\x01" and answer[12 : 12 + len(question)].lower() == question.lower()


class UpstreamForwarder:
    """Each attempt uses a new socket (a fresh random source port) and a fresh random ID; the
    socket is connected, so the kernel itself drops datagrams from any other address."""

    def __init__(self, servers: Sequence[Endpoint], timeout: float) -> None:
        if not servers:
            raise UpstreamError("no upstream servers configured")
        self.servers, self.timeout = tuple(servers), timeout

    async def resolve(self, packet: bytes) -> bytes:
        """The first usable answer, with the client's ID restored; UpstreamError if none."""
        question = question_section(packet)
        if question is None:
            raise UpstreamError("query has no well-formed question")
        problems = []
        for server in self.servers:
            qid = secrets.randbits(16)
            wire = struct.pack("!H", qid) + packet[2:]
            try:
                answer = await self._udp(server, wire, qid, question)
                if answer[2] & _TC:
                    answer = await asyncio.wait_for(self._tcp(server, wire, qid, question), self.timeout)
                return packet[:2] + answer[2:]
            except (TimeoutError, OSError, UpstreamError, asyncio.IncompleteReadError) as err:
                problems.append(f"{server}: {type(err).__name__} {err}".strip())
        raise UpstreamError("; ".join(problems))

    async def _udp(self, server: Endpoint, wire: bytes, qid: int, question: bytes) -> bytes:
        """One UDP exchange on a plain non-blocking socket (cheaper than a transport per query)."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        future: asyncio.Future[bytes] = loop.create_future()

        def readable() -> None:
            while not future.done():
                try:
                    data = sock.recv(65535)
                except BlockingIOError:
                    return
                except OSError as err:  # ICMP port unreachable: fail over at once
                    future.set_exception(err)
                    return
                if matches(data, qid, question):
                    future.set_result(data)

        def expired() -> None:
            if not future.done():
                future.set_exception(TimeoutError(f"no answer in {self.timeout:g} s"))

        timer = loop.call_later(self.timeout, expired)
        try:
            sock.connect((server.host, server.port))
            loop.add_reader(sock.fileno(), readable)
            try:
                sock.send(wire)
                return await future
            finally:
                loop.remove_reader(sock.fileno())
        finally:
            timer.cancel()
            sock.close()

    async def _tcp(self, server: Endpoint, wire: bytes, qid: int, question: bytes) -> bytes:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(struct.pack("!H", len(wire)) + wire)
            await writer.drain()
            while True:  # a well-behaved server sends one reply; skip anything that does not match
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                answer = await reader.readexactly(size)
                if matches(answer, qid, question):
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
            answer = await self._forwarder.resolve(request.packet)
        except UpstreamError as err:
            request.error, request.upstream_rcode = f"upstream: {err}", "SERVFAIL"
            return replies.empty(request.head, RCODE.SERVFAIL)
        finally:
            request.upstream_seconds = time.perf_counter() - started
        request.upstream_rcode = RCODE.get(answer[3] & 0x0F)
        return answer
