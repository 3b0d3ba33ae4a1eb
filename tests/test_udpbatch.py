"""The UDP listener read and written in batches (resolverguard.udpbatch, _udpbatch.c), over real sockets:
a DnsServer on 127.0.0.1 (and ::1) with a test upstream, bursts from many source ports, malformed
datagrams among them; the recvmmsg/sendmmsg path and the one-call-per-datagram fallback alike."""

from __future__ import annotations

import asyncio
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
from dnsfixtures import UPSTREAM_A, Upstream, run_upstream

from resolverguard import replies, udpbatch
from resolverguard.chain import Request
from resolverguard.config import Endpoint
from resolverguard.server import DnsServer
from resolverguard.steps.upstream import UpstreamForwarder, UpstreamStep
from resolverguard.wire import NXDOMAIN

NATIVE = udpbatch.recv_many is not None


@contextmanager
def serving(
    upstream_port: int, host: str = "127.0.0.1", pool: int = 32
) -> Iterator[tuple[DnsServer, list[dict[str, Any]], asyncio.AbstractEventLoop]]:
    """A DnsServer in a thread: names starting with "nx" answered NXDOMAIN at once (in the read
    callback), the others forwarded to the test upstream (answered from its reader, later)."""
    errors: list[dict[str, Any]] = []
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _, context: errors.append(context))

    async def build() -> Callable[[Request], Any]:
        step = UpstreamStep(UpstreamForwarder((Endpoint("127.0.0.1", upstream_port),), 3.0, pool=pool))

        async def chain(request: Request) -> bytes | None:
            if request.head.qname.startswith("nx"):
                return replies.empty(request.head, NXDOMAIN)
            return await step(request)

        return chain

    server = DnsServer(loop.run_until_complete(build()), [Endpoint(host, 0)])
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server, errors, loop
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(1.0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def burst(host: str, port: int, packets: list[bytes], timeout: float = 10.0) -> list[bytes | None]:
    """Sends every packet from a socket (source port) of its own, all before reading any reply;
    the first reply each socket gets, or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks = [socket.socket(family, socket.SOCK_DGRAM) for _ in packets]
    try:
        for sock, packet in zip(socks, packets, strict=True):
            sock.sendto(packet, (host, port))
        got: dict[int, bytes] = {}
        waiting = {sock.fileno(): i for i, sock in enumerate(socks)}
        while waiting:
            ready, _, _ = select.select(list(waiting), [], [], timeout)
            if not ready:
                break
            for fd in ready:
                i = waiting.pop(fd)
                got[i] = socks[i].recv(65535)
        return [got.get(i) for i in range(len(packets))]
    finally:
        for sock in socks:
            sock.close()


def queries(names: list[str]) -> list[dns.message.Message]:
    return [dns.message.make_query(name, "A") for name in names]


def check_answers(asked: list[dns.message.Message], got: list[bytes | None]) -> None:
    for query, wire in zip(asked, got, strict=True):
        assert wire is not None, f"no answer to {query.question[0].name}"
        answer = dns.message.from_wire(wire)
        assert answer.id == query.id and answer.question == query.question
        if query.question[0].name.to_text().startswith("nx"):
            assert answer.rcode() == dns.rcode.NXDOMAIN and not answer.answer
        else:
            assert answer.rcode() == dns.rcode.NOERROR and answer.answer[0][0].to_text() == UPSTREAM_A


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_a_burst_from_many_source_ports_is_answered_in_full(native_io: bool, host: str) -> None:
    """300 queries, one per source port, all in the socket before the server reads (many batches of
    32): every one answered, with its own ID and question; hits from the read callback, forwarded
    names from the upstream's reader, interleaved. IPv4 and IPv6 clients."""
    if host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    names = [f"{'nx' if i % 3 == 0 else 'f'}{i}.example.com" for i in range(300)]
    asked = queries(names)
    with run_upstream(Upstream()) as up, serving(up.port, host) as (server, errors, _):
        assert server._udp[0].io.native is native_io
        got = burst(host, server.bound[0][1], [q.to_wire() for q in asked])
        listener = server._udp[0]
    check_answers(asked, got)
    assert (listener.failed, listener.dropped, listener.too_large) == (0, 0, 0)
    assert errors == []


def test_malformed_datagrams_in_a_batch_do_not_cost_the_others_their_answer(native_io: bool) -> None:
    """Garbage of every kind among good queries in the same burst: too short for a header, a header
    with a broken question (FORMERR), a response (ignored), a datagram longer than a query can be
    (left out, counted); every good query is still answered, nothing reaches the loop's error handler."""
    good = queries([f"{'nx' if i % 2 else 'g'}{i}.example.com" for i in range(120)])
    broken_question = dns.message.make_query("bad.example.com", "A").to_wire()[:-3]
    response = dns.message.make_response(dns.message.make_query("r.example.com", "A")).to_wire()
    junk = [b"", b"\x01", b"\x00" * 11, broken_question, response, os.urandom(40), b"\x12\x34" + b"\xff" * 6000]
    packets, where = [], []
    for i, query in enumerate(good):
        packets.append(query.to_wire())
        where.append(True)
        if i % 10 == 0:
            packets.append(junk[(i // 10) % len(junk)])
            where.append(False)
    with run_upstream(Upstream()) as up, serving(up.port) as (server, errors, _):
        port = server.bound[0][1]
        got = burst("127.0.0.1", port, packets, timeout=3.0)
        after = dns.query.udp(dns.message.make_query("after.example.com", "A"), "127.0.0.1", port=port, timeout=5)
        listener = server._udp[0]
    check_answers(good, [wire for wire, ok in zip(got, where, strict=True) if ok])
    formerr = [wire for wire, packet in zip(got, packets, strict=True) if packet == broken_question]
    assert formerr and all(w is not None and dns.message.from_wire(w).rcode() == dns.rcode.FORMERR for w in formerr)
    assert all(wire is None for wire, packet in zip(got, packets, strict=True) if packet in (b"", b"\x01", response))
    assert listener.too_large == sum(len(p) > udpbatch.SLOT for p in packets) > 0
    assert after.answer[0][0].to_text() == UPSTREAM_A
    assert errors == []


def test_the_fallback_gives_the_same_answers_as_the_batched_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same burst through recvmmsg/sendmmsg and through one call per datagram: the same bytes back."""
    if not NATIVE:
        pytest.skip("_udpbatch not built (no C compiler)")
    asked = queries([f"{'nx' if i % 2 else 's'}{i}.example.com" for i in range(100)])
    seen = []
    with run_upstream(Upstream()) as up:
        for off in ("", "1"):
            monkeypatch.setenv(udpbatch.NO_MMSG, off)
            with serving(up.port) as (server, _, _):
                assert server._udp[0].io.native is (off == "")
                seen.append(burst("127.0.0.1", server.bound[0][1], [q.to_wire() for q in asked]))
    assert seen[0] == seen[1] and None not in seen[0]


@contextmanager
def listener_on_unix_pair(
    native_io: bool, max_queued: int = udpbatch.MAX_QUEUED
) -> Iterator[tuple[udpbatch.UdpListener, socket.socket, asyncio.AbstractEventLoop]]:
    """A UdpListener on one end of a datagram socketpair that echoes what it reads; the test holds
    the other end. Unlike loopback UDP (the kernel hands a datagram to the receiver inside the
    send), a Unix datagram socket whose peer does not read fills up: sends then fail with EAGAIN."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    loop = asyncio.new_event_loop()
    ready: list[udpbatch.UdpListener] = []

    async def start() -> None:
        ready.append(
            udpbatch.UdpListener(
                ours, lambda lst, data, address: lst.sendto(data, address), max_queued=max_queued, native_io=native_io
            )
        )

    loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield ready[0], theirs, loop
    finally:
        loop.call_soon_threadsafe(ready[0].close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        theirs.close()


def on_loop(loop: asyncio.AbstractEventLoop, call: Callable[[], Any]) -> Any:
    async def run() -> Any:
        return call()

    return asyncio.run_coroutine_threadsafe(run(), loop).result(10)


def test_replies_wait_while_the_send_buffer_is_full_and_none_is_lost(native_io: bool) -> None:
    """The peer stops reading: the listener's sends fail with EAGAIN and the replies stay queued;
    once the peer reads again every reply arrives, in order."""
    with listener_on_unix_pair(native_io) as (listener, peer, loop):
        peer.setblocking(True)
        sent = [f"reply {i}".encode() for i in range(2000)]
        on_loop(loop, lambda: [listener.sendto(data, None) for data in sent])
        queued = on_loop(loop, lambda: len(listener._queue))
        assert queued > 0  # the peer's queue (net.unix.max_dgram_qlen, the send buffer) holds far fewer
        peer.settimeout(5)
        got = [peer.recv(100) for _ in sent]
    assert got == sent
    assert (listener.failed, listener.dropped) == (0, 0)


def test_replies_beyond_the_queue_bound_are_dropped_and_counted(native_io: bool) -> None:
    with listener_on_unix_pair(native_io, max_queued=50) as (listener, peer, loop):
        sent = [f"reply {i}".encode() for i in range(2000)]
        on_loop(loop, lambda: [listener.sendto(data, None) for data in sent])
        held = on_loop(loop, lambda: len(listener._queue))
        dropped = on_loop(loop, lambda: listener.dropped)
        assert held <= 50 + 50 // 4  # bounded while the peer does not read, with no flush in between
        peer.settimeout(2)
        got = []
        try:
            while True:
                got.append(peer.recv(100))
        except TimeoutError:
            pass
    assert dropped > 0 and len(got) + dropped == len(sent)
    assert got == sorted(got, key=sent.index) and got[-1] == sent[-1]  # the oldest were dropped


def test_a_reply_the_kernel_refuses_is_counted_and_the_others_go(native_io: bool) -> None:
    """Per datagram: a reply to port 0 (EINVAL) or to something that is not an address is counted
    in `failed`; the replies around it still reach their client."""
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(5)
    loop = asyncio.new_event_loop()

    async def run() -> udpbatch.UdpListener:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        listener = udpbatch.UdpListener(sock, lambda *_: None, native_io=native_io)
        to = client.getsockname()
        for data, address in (
            (b"one", to),
            (b"lost", ("127.0.0.1", 0)),
            (b"two", to),
            (b"lost", ("not an address", 53)),
            (b"lost", "nonsense"),
            (b"three", to),
        ):
            listener.sendto(data, address)
        await asyncio.sleep(0.05)
        listener.close()
        return listener

    try:
        listener = loop.run_until_complete(run())
        got = [client.recv(100) for _ in range(3)]
    finally:
        loop.close()
        client.close()
    assert got == [b"one", b"two", b"three"]
    assert listener.failed == 3


def test_the_fallback_is_taken_when_asked() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert udpbatch.DatagramIO(sock, native_io=False).native is False
        assert udpbatch.DatagramIO(sock, native_io=True).native is NATIVE
    finally:
        sock.close()


def count_send_calls(mp: pytest.MonkeyPatch) -> list[int]:
    """Wraps the C module's send_many: the sizes of the batches it is asked to send, in order (the
    batched path forced on)."""
    calls: list[int] = []
    real = udpbatch.send_many

    def counting(fd: int, family: int, items: list[Any], start: int) -> Any:
        calls.append(len(items))
        return real(fd, family, items, start)

    mp.setattr(udpbatch, "send_many", counting)
    mp.delenv(udpbatch.NO_MMSG, raising=False)
    return calls


def test_replies_of_a_burst_leave_in_few_send_calls() -> None:
    """What the batching is for: with recvmmsg/sendmmsg, 200 answers made in the read callback go
    out in far fewer system calls than one each (counted by wrapping the C module's send_many)."""
    if not NATIVE:
        pytest.skip("_udpbatch not built (no C compiler)")
    asked = queries([f"nx{i}.example.com" for i in range(200)])
    with pytest.MonkeyPatch.context() as mp, run_upstream(Upstream()) as up:
        calls = count_send_calls(mp)
        with serving(up.port) as (server, _, loop):
            loop.call_soon_threadsafe(time.sleep, 0.5)  # the server busy while the whole burst arrives
            got = burst("127.0.0.1", server.bound[0][1], [q.to_wire() for q in asked])
    check_answers(asked, got)
    assert sum(calls) == 200 and len(calls) <= 200 // udpbatch.BATCH + 2


def test_replies_to_forwarded_names_leave_together_from_the_upstream_reader() -> None:
    """The upstream's reader holds the listener (handoff.ReplyHold) while it reads the answers that
    are there: the replies of the queries it resumes leave in one sendmmsg, not one call each (one
    pooled socket, so the upstream's answers to a burst pile up on it while the server is busy)."""
    if not NATIVE:
        pytest.skip("_udpbatch not built (no C compiler)")
    asked = queries([f"www{i}.example.com" for i in range(200)])
    with pytest.MonkeyPatch.context() as mp, run_upstream(Upstream()) as up:
        calls = count_send_calls(mp)
        with serving(up.port, pool=1) as (server, errors, loop):
            loop.call_soon_threadsafe(time.sleep, 0.5)
            got = burst("127.0.0.1", server.bound[0][1], [q.to_wire() for q in asked])
    check_answers(asked, got)
    assert not errors
    assert sum(calls) == 200 and len(calls) < 200 and max(calls) > 1
