"""The upstream forwarder's socket pool, over real sockets to a test upstream on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from dnsfixtures import UPSTREAM_A, Upstream, run_upstream
from dnslib import QTYPE, RR, A, DNSRecord

from resolverguard import udpbatch
from resolverguard.config import Endpoint
from resolverguard.errors import UpstreamError
from resolverguard.steps.upstream import RandomIds, UpstreamForwarder


def query(name: str, qid: int) -> bytes:
    record = DNSRecord.question(name)
    record.header.id = qid
    return bytes(record.pack())


def test_pooled_sockets_rotate_source_ports_and_keep_answers_apart() -> None:
    with run_upstream(Upstream()) as up:

        async def run() -> tuple[list[DNSRecord], list[DNSRecord], int]:
            forwarder = UpstreamForwarder((Endpoint("127.0.0.1", up.port),), timeout=2.0, pool=2, max_uses=3)
            serial = [DNSRecord.parse(await forwarder.resolve(query(f"s{i}.example.com", i))) for i in range(12)]
            names = [f"c{i}.example.com" for i in range(60)]
            together = await asyncio.gather(*(forwarder.resolve(query(n, 1000 + i)) for i, n in enumerate(names)))
            open_sockets = sum(len(pool) for pool in forwarder._pools.values())
            forwarder.close()
            return serial, [DNSRecord.parse(a) for a in together], open_sockets

        serial, together, open_sockets = asyncio.run(run())
    for i, answer in enumerate(serial):
        assert answer.header.id == i and str(answer.q.qname) == f"s{i}.example.com."
        assert str(answer.rr[0].rdata) == UPSTREAM_A
    for i, answer in enumerate(together):  # each client got the answer to its own question
        assert answer.header.id == 1000 + i and str(answer.q.qname) == f"c{i}.example.com."
    ports = [port for _, port in up.sources]
    assert len(set(ports[:12])) >= 4  # 12 queries, 3 per socket: at least 4 source ports
    assert len(set(ports)) >= 24  # and the pool kept moving under concurrent load (72 queries / 3)
    assert open_sockets <= 2


def test_random_ids_cover_the_16_bit_space() -> None:
    ids = RandomIds(chunk=64)
    drawn = [ids.draw() for _ in range(5000)]
    assert all(0 <= x < 65536 for x in drawn) and len(set(drawn)) > 4500


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_failed_upstream_is_tried_last_until_its_backoff_ends() -> None:
    from resolverguard.steps.upstream import UpstreamHealth

    a, b, c = (Endpoint("127.0.0.1", p) for p in (1, 2, 3))
    clock = Clock()
    health = UpstreamHealth(clock)
    assert health.order((a, b, c)) == (a, b, c)
    health.failed(a)
    assert health.order((a, b, c)) == (b, c, a)  # never dropped: last resort
    clock.now = 1.0
    assert health.order((a, b, c)) == (a, b, c)  # backoff over: probed again
    health.failed(a)
    clock.now = 2.5
    assert health.order((a, b, c)) == (b, c, a)  # second failure: 2 s
    health.answered(a)
    assert health.order((a, b, c)) == (a, b, c)
    for _ in range(20):
        health.failed(b)
    clock.now += 59
    assert health.order((a, b, c)) == (a, c, b)  # backoff capped at 60 s
    clock.now += 2
    assert health.order((a, b, c)) == (a, b, c)


def test_dead_first_upstream_costs_one_timeout_not_one_per_query() -> None:
    with run_upstream(Upstream(silent=True)) as dead, run_upstream(Upstream()) as good:

        async def run() -> list[float]:
            servers = (Endpoint("127.0.0.1", dead.port), Endpoint("127.0.0.1", good.port))
            forwarder = UpstreamForwarder(servers, timeout=0.3)
            took = []
            for i in range(6):
                started = time.monotonic()
                answer = DNSRecord.parse(await forwarder.resolve(query(f"h{i}.example.com", i)))
                assert str(answer.rr[0].rdata) == UPSTREAM_A
                took.append(time.monotonic() - started)
            forwarder.close()
            return took

        took = asyncio.run(run())
    assert took[0] >= 0.3 and all(t < 0.2 for t in took[1:])  # only the first query waited
    assert len(dead.queries) == 1 and len(good.queries) == 6


@contextlib.contextmanager
def spoofing_upstream() -> Iterator[tuple[int, list[str]]]:
    """An upstream that, before each real answer, sends what an off-path attacker would: the real
    answer from another port (another address), the answer with a wrong ID, and an answer to
    another question with the right ID; the real answer comes last. `sent` names what was sent."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(0.1)
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind(("127.0.0.1", 0))
    sent: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, addr = server.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            query = DNSRecord.parse(data)
            real = query.reply()
            real.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(UPSTREAM_A), ttl=60))
            forged = query.reply()
            forged.add_answer(RR(query.q.qname, QTYPE.A, rdata=A("203.0.113.66"), ttl=86400))
            attacker.sendto(forged.pack(), addr)  # right ID and question, wrong source port
            forged.header.id ^= 0x5A5A
            server.sendto(forged.pack(), addr)  # wrong ID
            other = DNSRecord.question("evil.example.net")
            other.header.id = query.header.id
            lie = other.reply()
            lie.add_answer(RR("evil.example.net", QTYPE.A, rdata=A("203.0.113.66"), ttl=86400))
            server.sendto(lie.pack(), addr)  # right ID, another question
            time.sleep(0.01)  # the forgeries are read first
            server.sendto(real.pack(), addr)
            sent.append(str(query.q.qname))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], sent
    finally:
        stop.set()
        thread.join(2)
        server.close()
        attacker.close()


def test_forged_replies_are_ignored_and_the_real_one_taken() -> None:
    """Anti-spoofing over real sockets: a reply must come from the upstream's address, carry our
    ID and answer our question; anything else is dropped while the query keeps waiting."""
    errors: list[dict[str, object]] = []
    with spoofing_upstream() as (port, sent):

        async def run() -> list[DNSRecord]:
            asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
            forwarder = UpstreamForwarder((Endpoint("127.0.0.1", port),), timeout=2.0, pool=2)
            answers = await asyncio.gather(*(forwarder.resolve(query(f"f{i}.example.com", i)) for i in range(8)))
            forwarder.close()
            return [DNSRecord.parse(a) for a in answers]

        answers = asyncio.run(run())
    assert len(sent) == 8 and not errors
    for i, answer in enumerate(answers):
        assert answer.header.id == i and str(answer.q.qname) == f"f{i}.example.com."
        assert [str(rr.rdata) for rr in answer.rr] == [UPSTREAM_A]


def test_a_reply_after_the_timeout_is_dropped_quietly() -> None:
    """A query that timed out fails over (here: SERVFAIL, UpstreamError); its late reply finds
    no one waiting and is dropped without an error, and the same sockets answer the next query."""
    errors: list[dict[str, object]] = []
    with run_upstream(Upstream(delay=0.5)) as slow:

        async def run() -> tuple[list[BaseException | bytes], float, bytes]:
            asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
            forwarder = UpstreamForwarder((Endpoint("127.0.0.1", slow.port),), timeout=0.2, pool=1)
            started = time.monotonic()
            asked = (forwarder.resolve(query(f"l{i}.example.com", i)) for i in range(5))
            late = await asyncio.wait_for(asyncio.gather(*asked, return_exceptions=True), 5)  # (a bug hangs)
            took = time.monotonic() - started
            await asyncio.sleep(0.6)  # the late replies arrive meanwhile
            forwarder.timeout = forwarder._deadlines.timeout = 2.0
            answer = await forwarder.resolve(query("after.example.com", 77))
            forwarder.close()
            return late, took, answer

        late, took, answer = asyncio.run(run())
    assert all(isinstance(x, UpstreamError) and "no answer in 0.2 s" in str(x) for x in late)
    assert 0.19 <= took < 0.45  # each at its own deadline (one timer for all), not later
    assert DNSRecord.parse(answer).header.id == 77 and not errors


def test_deadlines_expire_each_query_at_its_own_time() -> None:
    """One timer for every query: queries sent over time against a silent upstream each fail
    `timeout` after they were sent, and answered ones never fail."""
    with run_upstream(Upstream(silent=True)) as dead, run_upstream(Upstream()) as good:

        async def one(forwarder: UpstreamForwarder, name: str, qid: int) -> float:
            started = time.monotonic()
            with contextlib.suppress(UpstreamError):
                await forwarder.resolve(query(name, qid))
            return time.monotonic() - started

        async def run() -> tuple[list[float], list[float], int]:
            silent = UpstreamForwarder((Endpoint("127.0.0.1", dead.port),), timeout=0.3)
            answering = UpstreamForwarder((Endpoint("127.0.0.1", good.port),), timeout=0.3)
            waits = []
            for i in range(6):
                waits.append(asyncio.ensure_future(one(silent, f"d{i}.example.com", i)))
                await asyncio.sleep(0.05)
            fine = [await one(answering, f"g{i}.example.com", i) for i in range(20)]
            timed = list(await asyncio.wait_for(asyncio.gather(*waits), 5))  # (a bug would hang here)
            await asyncio.sleep(0.4)  # every deadline has passed: nothing is kept
            left = len(answering._deadlines) + len(silent._deadlines)
            silent.close(), answering.close()
            return timed, fine, left

        timed, fine, left = asyncio.run(run())
    assert all(0.29 <= t < 0.45 for t in timed), timed
    assert all(t < 0.25 for t in fine) and left == 0


# -- a model batch's queries: one socket, one sendmmsg (UpstreamForwarder.hold) --------------------


@dataclass
class RecordingUpstream(Upstream):
    """A test upstream that also keeps the ID each UDP query arrived with."""

    ids: list[int] = field(default_factory=list)

    def answer(self, data: bytes) -> bytes:
        self.ids.append(data[0] << 8 | data[1])
        return super().answer(data)


def held_batch(port: int, packets: list[bytes], pool: int = 32, timeout: float = 2.0) -> list[bytes | BaseException]:
    """`packets` resolved as one held batch (all asked between `hold` and `release`)."""

    async def run() -> list[bytes | BaseException]:
        forwarder = UpstreamForwarder((Endpoint("127.0.0.1", port),), timeout=timeout, pool=pool)
        forwarder.hold()
        tasks = [asyncio.ensure_future(forwarder.resolve(p)) for p in packets]
        await asyncio.sleep(0)  # each task runs up to its upstream query, kept while held
        assert all(not t.done() for t in tasks)
        forwarder.release()
        try:
            return await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            forwarder.close()

    return asyncio.run(run())


def test_a_held_batch_shares_one_source_port_with_an_id_per_query(
    native_io: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 queries asked while held: one source port (a random socket of the pool), a distinct random
    ID each on the wire, every client's own ID and question in its answer; with the C module they
    leave in one sendmmsg (counted by wrapping it)."""
    calls: list[int] = []
    if native_io:
        real = udpbatch.send_connected

        def counting(fd: int, datagrams: list[bytes], start: int) -> tuple[int, int]:
            calls.append(len(datagrams) - start)
            return real(fd, datagrams, start)

        monkeypatch.setattr(udpbatch, "send_connected", counting)
    names = [f"h{i}.example.com" for i in range(40)]
    with run_upstream(RecordingUpstream()) as up:
        answers = held_batch(up.port, [query(n, 500 + i) for i, n in enumerate(names)])
    for i, (name, wire) in enumerate(zip(names, answers, strict=True)):
        assert isinstance(wire, bytes), wire
        answer = DNSRecord.parse(wire)
        assert answer.header.id == 500 + i and str(answer.q.qname) == name + "."
        assert str(answer.rr[0].rdata) == UPSTREAM_A
    assert len(up.sources) == 40 and len(set(up.sources)) == 1
    # our own random IDs, not the clients': a random one falls among the clients' 40 now and then
    # (~2.4% of runs), 4 or more only if they were passed on (chance ~1e-8)
    assert len(set(up.ids)) == 40 and len(set(up.ids) & set(range(500, 540))) < 4
    assert calls == ([40] if native_io else [])


@dataclass
class HugerUpstream(Upstream):
    """Answers of 400 A records (~6.4 KB): over the listener's 4096-byte read slot."""

    def answer(self, data: bytes) -> bytes:
        reply = DNSRecord.parse(super().answer(data))
        for i in range(150):
            reply.add_answer(RR(reply.q.qname, QTYPE.A, rdata=A(f"203.0.113.{i}"), ttl=300))
        return bytes(reply.pack())


def test_answers_over_4_kb_are_read_whole_from_a_held_batch(native_io: bool) -> None:
    """The batch's answers are read with one recvmmsg into slots that fit any datagram: ~6 KB
    answers (over the listener's 4096-byte slot) arrive whole."""
    names = [f"big{i}.example.com" for i in range(6)]
    with run_upstream(HugerUpstream(huge=True)) as up:
        answers = held_batch(up.port, [query(n, i) for i, n in enumerate(names)])
    for name, wire in zip(names, answers, strict=True):
        assert isinstance(wire, bytes) and len(wire) > 6000, wire
        answer = DNSRecord.parse(wire)
        assert str(answer.q.qname) == name + "." and len(answer.rr) == 400


def test_a_datagram_the_kernel_refuses_fails_its_own_query_only(native_io: bool) -> None:
    """One query of the batch too long for UDP (EMSGSIZE): that one fails (UpstreamError, as its
    own send raising would), the ones before and after it are answered."""
    packets = [query(f"ok{i}.example.com", i) for i in range(6)]
    packets[3] += bytes(70_000)  # (the question is read from the front; the datagram cannot be sent)
    with run_upstream(Upstream()) as up:
        answers = held_batch(up.port, packets)
    assert isinstance(answers[3], UpstreamError) and "Message too long" in str(answers[3]), answers[3]
    for i in (0, 1, 2, 4, 5):
        assert isinstance(answers[i], bytes) and DNSRecord.parse(answers[i]).header.id == i
    assert len(up.sources) == 5


def test_a_held_batch_to_a_closed_port_fails_at_once_not_at_the_timeout(native_io: bool) -> None:
    """ICMP port unreachable on the batch's socket: every query of it fails over at once (the
    read reports the error), not after the 3 s timeout."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    closed = probe.getsockname()[1]
    probe.close()
    started = time.monotonic()
    answers = held_batch(closed, [query(f"c{i}.example.com", i) for i in range(5)], timeout=3.0)
    assert all(isinstance(a, UpstreamError) for a in answers), answers
    assert time.monotonic() - started < 2.0


def test_answered_queries_leave_the_deadline_queue_as_new_ones_come() -> None:
    """The timer's FIFO drops the answered queries at its head as new queries come, so it never
    holds `timeout` seconds of them for one sweep to walk (issue #17: ~4,000 at 2,000 qps held
    the loop ~2.3 ms every 2 s); a query still waiting at the head keeps the ones behind it."""
    with run_upstream(Upstream()) as good, run_upstream(Upstream(silent=True)) as dead:

        async def run() -> tuple[list[int], list[int], bool]:
            answering = UpstreamForwarder((Endpoint("127.0.0.1", good.port),), timeout=2.0)
            kept = []
            for i in range(200):
                await answering.resolve(query(f"q{i}.example.com", i))
                kept.append(len(answering._deadlines))
            silent = UpstreamForwarder((Endpoint("127.0.0.1", dead.port),), timeout=0.3)
            waiting = asyncio.ensure_future(silent.resolve(query("lost.example.com", 1)))
            await asyncio.sleep(0.05)
            behind = []
            for _ in range(10):  # through the same FIFO: queries the silent one's deadline holds
                silent._deadlines.done(silent._deadlines.expire(asyncio.get_running_loop(), asyncio.Future()))
                behind.append(len(silent._deadlines))
            with contextlib.suppress(UpstreamError):
                await asyncio.wait_for(waiting, 5)
            answering.close(), silent.close()
            return kept, behind, waiting.done()

        kept, behind, failed = asyncio.run(run())
    assert max(kept) <= 2, kept
    assert behind == list(range(2, 12)) and failed
