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
