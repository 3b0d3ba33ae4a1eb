"""Queries handed their model score and upstream answer by whoever settles them (resolverguard.handoff),
over real sockets: a DnsServer on 127.0.0.1, dnspython clients, a test upstream."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dns.message
import dns.query
import pytest
from dnsfixtures import UPSTREAM_A, Upstream, run_upstream

from resolverguard import udpbatch
from resolverguard.batching import MicroBatcher
from resolverguard.chain import Request
from resolverguard.config import Endpoint
from resolverguard.handoff import Handoff
from resolverguard.server import DnsServer
from resolverguard.steps.upstream import UpstreamForwarder, UpstreamStep


@contextmanager
def serving(chain, errors: list[dict[str, object]]) -> Iterator[int]:
    """A DnsServer with `chain(loop)` in a thread; the loop's reported errors go to `errors`."""
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    server = DnsServer(loop.run_until_complete(chain()), [Endpoint("127.0.0.1", 0)])
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server.bound[0][1]
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(1.0), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(params=["", "1"], ids=["mmsg", "fallback"])
def no_mmsg(request: pytest.FixtureRequest) -> str:
    """RESOLVERGUARD_NO_MMSG as a test sets it: "" (the C module where built) or "1" (one call each)."""
    return str(request.param)


def ask(port: int, names: list[str]) -> list[dns.message.Message]:
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return list(
            pool.map(lambda n: dns.query.udp(dns.message.make_query(n, "A"), "127.0.0.1", port=port, timeout=5), names)
        )


def test_the_reader_that_answers_a_query_may_see_it_retire_that_socket() -> None:
    """Every socket retires after one use: the query the reader runs on closes the reader's own
    socket (resolverguard.steps.upstream.Channel._readable), and every answer still reaches its client."""
    errors: list[dict[str, object]] = []
    with run_upstream(Upstream()) as up:

        async def chain() -> UpstreamStep:
            return UpstreamStep(UpstreamForwarder((Endpoint("127.0.0.1", up.port),), 2.0, pool=2, max_uses=1))

        with serving(chain, errors) as port:
            names = [f"r{i}.example.com" for i in range(80)]
            answers = ask(port, names)
    for name, answer in zip(names, answers, strict=True):
        assert answer.question[0].name.to_text() == name + "."
        assert answer.answer[0][0].to_text() == UPSTREAM_A
    assert len(set(port for _, port in up.sources)) >= 40  # (the sockets did retire)
    assert errors == []


def test_a_scored_query_runs_on_to_its_upstream_inside_the_batch_that_scored_it() -> None:
    """The model's batch hands each score over at once: by the time its flush returns, each of its
    queries has sent its upstream query (with plain futures they would wait for a loop turn)."""
    errors: list[dict[str, object]] = []
    at_flush_end: list[tuple[int, int]] = []  # (names scored so far, upstream queries sent so far)
    with run_upstream(Upstream(delay=0.02)) as up:

        async def chain():
            forwarder = UpstreamForwarder((Endpoint("127.0.0.1", up.port),), 2.0, pool=4, max_uses=10_000)
            step = UpstreamStep(forwarder)
            batcher: MicroBatcher[float] = MicroBatcher(lambda texts: [0.5] * len(texts))
            flush = batcher.flush

            def flush_and_count() -> None:
                flush()
                sent = sum(channel.uses for pool in forwarder._pools.values() for channel in pool)
                at_flush_end.append((batcher.names, sent))

            batcher.flush = flush_and_count  # type: ignore[method-assign]

            async def scored_then_forwarded(request: Request) -> bytes | None:
                future = batcher.submit(request.qname)
                assert isinstance(future, Handoff)
                await future
                return await step(request)

            return scored_then_forwarded

        with serving(chain, errors) as port:
            names = [f"s{i}.example.com" for i in range(48)]
            answers = ask(port, names)
    for name, answer in zip(names, answers, strict=True):
        assert answer.question[0].name.to_text() == name + "." and answer.answer[0][0].to_text() == UPSTREAM_A
    assert at_flush_end[-1][0] == len(names) and errors == []
    assert all(scored == sent for scored, sent in at_flush_end), at_flush_end


def burst(port: int, names: list[str], timeout: float = 10.0) -> list[dns.message.Message | None]:
    """Every query sent from a socket of its own before any reply is read; the replies, in order."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in names]
    asked = [dns.message.make_query(n, "A") for n in names]
    try:
        for sock, query in zip(socks, asked, strict=True):
            sock.sendto(query.to_wire(), ("127.0.0.1", port))
        got: list[dns.message.Message | None] = []
        for sock in socks:
            sock.settimeout(timeout)
            try:
                got.append(dns.message.from_wire(sock.recv(65535)))
            except TimeoutError:
                got.append(None)
        return got
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("held", [True, False], ids=["held", "not-held"])
def test_a_model_batch_sends_its_upstream_queries_from_one_socket(
    held: bool, monkeypatch: pytest.MonkeyPatch, no_mmsg: str
) -> None:
    """MicroBatcher holds the forwarder (`holds`) while its batch's queries run on: 96 names that
    reach the server together (read 64 at a time: udpbatch.BATCH) leave from a few sockets, one per
    batch, not from a random one of the pool's 32 each; every client gets its own answer."""
    if no_mmsg:
        monkeypatch.setenv(udpbatch.NO_MMSG, no_mmsg)
    errors: list[dict[str, object]] = []
    busy: list[asyncio.AbstractEventLoop] = []
    with run_upstream(Upstream()) as up:

        async def chain():
            busy.append(asyncio.get_running_loop())
            forwarder = UpstreamForwarder((Endpoint("127.0.0.1", up.port),), 3.0, pool=32, max_uses=10_000)
            step = UpstreamStep(forwarder)
            batcher: MicroBatcher[float] = MicroBatcher(
                lambda texts: [0.5] * len(texts), holds=(forwarder,) if held else ()
            )

            async def scored_then_forwarded(request: Request) -> bytes | None:
                await batcher.submit(request.qname)
                return await step(request)

            return scored_then_forwarded

        with serving(chain, errors) as port:
            busy[0].call_soon_threadsafe(time.sleep, 0.5)  # the server busy while the whole burst arrives
            names = [f"b{i}.example.com" for i in range(96)]
            answers = burst(port, names)
    for name, answer in zip(names, answers, strict=True):
        assert answer is not None, name
        assert answer.question[0].name.to_text() == name + "." and answer.answer[0][0].to_text() == UPSTREAM_A
    ports = {port for _, port in up.sources}
    assert errors == []
    if held:
        assert len(ports) <= 8, ports  # (96 / 64: 2 batches, and a few more should the reads split)
    else:
        assert len(ports) >= 16  # a random socket of 32 each
