"""The upstream forwarder's socket pool, over real sockets to a test upstream on 127.0.0.1."""

from __future__ import annotations

import asyncio

from dnsfixtures import UPSTREAM_A, Upstream, run_upstream
from dnslib import DNSRecord

from resolverguard.config import Endpoint
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
    import time

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
