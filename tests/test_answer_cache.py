"""The DNS answer cache over real sockets; time is driven by a fake clock on the running cache."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from dnsfixtures import UPSTREAM_A, Upstream, eventually, run_resolver, run_upstream

from resolverguard.config import AnswerCacheConfig, Config, Endpoint, ListsConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ask(r, name: str, qtype: str = "A", **kw) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, qtype, **kw), r.host, port=r.port, timeout=3)


@pytest.fixture
def setup(tmp_path: Path):
    def start(**cache):
        up_ctx = run_upstream(Upstream())
        up = up_ctx.__enter__()
        cfg = replace(
            Config(upstreams=(Endpoint("127.0.0.1", up.port),)),
            answer_cache=AnswerCacheConfig(**cache),
            lists=ListsConfig(deny=("blocked.example",)),
        )
        r_ctx = run_resolver(cfg, tmp_path / "q.log")
        r = r_ctx.__enter__()
        clock = Clock()
        r.service.pipeline.answers.clock = clock
        started.append((r_ctx, up_ctx))
        return r, up, clock

    started: list = []
    yield start
    for r_ctx, up_ctx in reversed(started):
        r_ctx.__exit__(None, None, None)
        up_ctx.__exit__(None, None, None)


def test_hit_serves_decremented_ttl_with_the_new_id(setup) -> None:
    r, up, clock = setup()
    first = ask(r, "www.example.com")
    clock.now += 100
    second = ask(r, "WWW.Example.com")  # case-insensitive key; dnspython checks the reply ID
    assert first.answer[0].ttl == 300 and second.answer[0].ttl == 200
    assert [rd.to_text() for rr in second.answer for rd in rr] == [UPSTREAM_A]
    assert len(up.queries) == 1
    assert r.log_lines()[1]["answer_cache"] == "hit" and r.log_lines()[1]["upstream_rcode"] == "NOERROR"


def test_expiry_goes_back_upstream(setup) -> None:
    r, up, clock = setup()
    ask(r, "www.example.com")
    clock.now += 301
    assert ask(r, "www.example.com").answer[0].ttl == 300
    assert len(up.queries) == 2


def test_negative_answers_cached_for_the_soa_minimum(setup) -> None:
    r, up, clock = setup(prefetch=False)  # at 29 of 30 s a prefetch would refresh it (tested below)
    assert ask(r, "nx1.example.com").rcode() == dns.rcode.NXDOMAIN
    clock.now += 29
    again = ask(r, "nx1.example.com")
    assert again.rcode() == dns.rcode.NXDOMAIN and again.authority[0].ttl == 60 - 29
    assert len(up.queries) == 1
    clock.now += 2  # past min(SOA TTL 60, MINIMUM 30)
    ask(r, "nx1.example.com")
    assert len(up.queries) == 2


def test_size_bound_evicts_least_recently_used(setup) -> None:
    r, up, _ = setup(size=2)
    for name in ("a.example.com", "b.example.com", "c.example.com", "a.example.com"):
        ask(r, name)
    assert len(up.queries) == 4 and len(r.service.pipeline.answers) == 2


def test_ttl_clamps(setup) -> None:
    r, up, clock = setup(max_ttl=60)
    ask(r, "www.example.com")
    clock.now += 61
    ask(r, "www.example.com")
    assert len(up.queries) == 2


def test_sinkhole_and_servfail_are_never_cached(setup, tmp_path: Path) -> None:
    r, up, _ = setup()
    assert [rd.to_text() for rr in ask(r, "blocked.example").answer for rd in rr] == ["0.0.0.0"]
    assert len(r.service.pipeline.answers) == 0
    with run_upstream(Upstream(silent=True)) as dead:
        cfg = Config(upstreams=(Endpoint("127.0.0.1", dead.port),), upstream_timeout=0.3)
        with run_resolver(cfg, tmp_path / "dead.log") as r2:
            assert ask(r2, "www.example.com").rcode() == dns.rcode.SERVFAIL
            assert len(r2.service.pipeline.answers) == 0


def test_edns_is_part_of_the_answer_only_for_edns_clients(setup) -> None:
    r, up, _ = setup()
    with_edns = ask(r, "www.example.com", use_edns=0)
    without = ask(r, "www.example.com")
    assert with_edns.edns == 0 and without.edns == -1  # no OPT for a client that sent none
    assert len(up.queries) == 1


def test_served_answer_is_the_stored_one_with_ttls_id_and_case_rewritten() -> None:
    from dnslib import EDNS0, QTYPE, RR, SOA, A, DNSRecord

    from resolverguard.config import AnswerCacheConfig
    from resolverguard.replies import edns_record
    from resolverguard.steps.answers import cacheable_ttl, served_wire, wire_layout

    answer = DNSRecord.question("www.example.com", "A").reply()
    answer.add_answer(RR("www.example.com", QTYPE.A, rdata=A("192.0.2.1"), ttl=300))
    answer.add_answer(RR("www.example.com", QTYPE.A, rdata=A("192.0.2.2"), ttl=120))
    answer.add_auth(RR("example.com", QTYPE.SOA, rdata=SOA("ns.", "h.", (1, 2, 3, 4, 5)), ttl=900))
    answer.add_ar(EDNS0(udp_len=1232))
    layout = wire_layout(answer.pack(), edns_opt=edns_record(False))
    assert layout is not None and len(layout.ttls) == 3 * 6 and len(layout.wire) == len(answer.pack()) - 11  # no OPT
    assert layout.answer_ttl == 120 and layout.soa == (900, 5)
    assert cacheable_ttl(layout, AnswerCacheConfig(min_ttl=0, max_ttl=86400)) == 120
    assert cacheable_ttl(layout, AnswerCacheConfig(min_ttl=0, max_ttl=60)) == 60
    for edns in (True, False):
        query = DNSRecord.question("WwW.Example.COM", "A")
        if edns:
            query.add_ar(EDNS0(udp_len=1232))
        served = dns.message.from_wire(served_wire(layout, query.pack(), edns, 100))
        assert served.id == query.header.id and served.question[0].name.to_text() == "WwW.Example.COM."
        assert [rr.ttl for rr in served.answer] == [20]  # dnspython merges the rrset: lowest TTL
        assert [rd.to_text() for rr in served.answer for rd in rr] == ["192.0.2.1", "192.0.2.2"]
        assert served.authority[0].ttl == 800 and served.edns == (0 if edns else -1)


def test_negative_ttl_is_capped_by_the_soa_minimum() -> None:
    from dnslib import QTYPE, RCODE, RR, SOA, DNSRecord

    from resolverguard.config import AnswerCacheConfig
    from resolverguard.steps.answers import cacheable_ttl, wire_layout

    nx = DNSRecord.question("nx.example.com", "A").reply()
    nx.header.rcode = RCODE.NXDOMAIN
    nx.add_auth(RR("example.com", QTYPE.SOA, rdata=SOA("ns.example.", "h.example.", (1, 2, 3, 4, 30)), ttl=60))
    layout = wire_layout(nx.pack())
    assert layout is not None and layout.soa == (60, 30)
    assert cacheable_ttl(layout, AnswerCacheConfig()) == 30
    bare = DNSRecord.question("nx.example.com", "A").reply()
    bare.header.rcode = RCODE.NXDOMAIN
    layout = wire_layout(bare.pack())
    assert layout is not None and cacheable_ttl(layout, AnswerCacheConfig()) is None  # no SOA, no caching
    servfail = DNSRecord.question("x.example.com", "A").reply()
    servfail.header.rcode = RCODE.SERVFAIL
    layout = wire_layout(servfail.pack())
    assert layout is not None and cacheable_ttl(layout, AnswerCacheConfig()) is None


@pytest.mark.parametrize("seed", range(3))
def test_wire_layout_never_raises_on_garbage(seed: int) -> None:
    import random

    from resolverguard.steps.answers import wire_layout

    rng = random.Random(seed)
    for _ in range(2000):
        wire_layout(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 80))))


def test_popular_answer_is_refreshed_before_it_expires(setup) -> None:
    r, up, clock = setup()
    ask(r, "www.example.com")
    clock.now += 275  # 25 s of 300 left: inside the last tenth
    late = ask(r, "www.example.com")
    assert late.answer[0].ttl == 25  # the client is answered from the cache at once
    assert eventually(lambda: len(up.queries) == 2)  # and the answer is fetched again behind it
    assert eventually(lambda: r.service.pipeline.answers.prefetches == 1)
    assert eventually(lambda: r.service.pipeline.answers.refreshing == 0)  # the refreshed answer is stored
    clock.now += 30  # past the first answer's expiry: the refreshed one serves
    fresh = ask(r, "www.example.com")
    assert 265 <= fresh.answer[0].ttl <= 300 and len(up.queries) == 2
    (line,) = [x for x in r.log_lines()][-1:]
    assert line["answer_cache"] == "hit"


def test_prefetch_can_be_turned_off(setup) -> None:
    r, up, clock = setup(prefetch=False)
    ask(r, "www.example.com")
    clock.now += 275
    assert ask(r, "www.example.com").answer[0].ttl == 25
    assert not eventually(lambda: len(up.queries) > 1, 0.5)
    clock.now += 30
    assert ask(r, "www.example.com").answer[0].ttl == 300 and len(up.queries) == 2  # expired: a miss


def test_reused_answer_equals_a_freshly_patched_one() -> None:
    import itertools

    from dnslib import EDNS0, QTYPE, RR, A, DNSRecord

    from resolverguard.replies import edns_record
    from resolverguard.steps.answers import _Entry, served_wire, wire_layout

    answer = DNSRecord.question("www.example.com", "A").reply()
    answer.add_answer(RR("www.example.com", QTYPE.A, rdata=A("192.0.2.1"), ttl=300))
    answer.add_ar(EDNS0(udp_len=1232))
    layout = wire_layout(answer.pack(), edns_opt=edns_record(False))
    assert layout is not None
    entry = _Entry(layout, 0.0, 300)
    cases = list(itertools.product([5, 6], ["www.example.com", "WWW.example.COM"], [0, 1], [False, True]))
    for qid, (elapsed, name, rd, edns) in enumerate(c for c in cases for _ in range(2)):  # each twice: reuse
        query = DNSRecord.question(name, "A")
        query.header.id, query.header.rd = 1000 + qid, rd
        if edns:
            query.add_ar(EDNS0(udp_len=1232))
        packet = query.pack()
        assert entry.serve(packet, edns, elapsed) == served_wire(layout, packet, edns, elapsed)


@pytest.mark.parametrize(
    "kind",
    ["plain", "big", "nxdomain", "out_of_bailiwick", "huge_ttl", "cut", "servfail", "mx", "any"],
)
def test_a_miss_is_stored_from_the_forwarders_read_as_from_its_own(kind: str) -> None:
    """The answer cache stores a miss from the records the forwarder read (`layout_of`): the same
    layout, byte for byte, as reading the answer again (`wire_layout`), for every kind of answer
    the test upstream gives and every kind of client query (EDNS or not, DO, letter case)."""
    from dnslib import EDNS0, DNSRecord

    from resolverguard.replies import edns_record, forwarded, forwarded_read
    from resolverguard.steps.answers import layout_of, wire_layout
    from resolverguard.wire import parse_query

    knobs = {"huge_ttl": {"ttl": 2**31 + 5}, "servfail": {"rcode": 2}, "nxdomain": {"tld_soa": True}}
    upstream = Upstream(**knobs.get(kind, {kind: True} if kind in ("big", "out_of_bailiwick", "cut") else {}))
    qtype = {"mx": "MX", "any": "ANY"}.get(kind, "A")
    name = "nxname.example.com" if kind == "nxdomain" else "WwW.Example.com"
    compared = 0
    for edns, do in ((False, False), (True, False), (True, True)):
        query = DNSRecord.question(name, qtype)
        if edns:
            query.add_ar(EDNS0(udp_len=1400, flags="do" if do else ""))
        for upstream_edns in (False, True):
            asked = DNSRecord.question(name, qtype)
            if upstream_edns:
                asked.add_ar(EDNS0(udp_len=1232))
            answer, head = upstream.answer(bytes(asked.pack())), parse_query(bytes(query.pack()))
            assert head is not None
            read = forwarded_read(answer, head)
            assert (read[0] if read else None) == forwarded(answer, head)
            if read is None:
                assert kind == "cut"
                continue
            for lo, hi in ((0, 2**31 - 1), (60, 120)):
                expected = wire_layout(read[0], lo, hi, edns_record(do))
                assert layout_of(read[0], read[1], lo, hi, edns_record(do)) == expected
                compared += expected is not None
    assert compared == (0 if kind == "cut" else 12)


def test_an_answer_never_asked_again_is_not_walked_by_the_garbage_collector() -> None:
    """Every miss stores an answer, and most are never asked again: until its first hit it is a
    plain tuple the collector stops tracking (full collections walked two objects per stored
    answer and their pauses set a miss's p99); its first hit serves it as before."""
    import gc

    from dnslib import QTYPE, RR, A, DNSRecord

    from resolverguard.chain import Request
    from resolverguard.steps.answers import AnswerCache, cache_key
    from resolverguard.wire import parse_query

    cache = AnswerCache(AnswerCacheConfig(), clock=Clock())
    query = DNSRecord.question("once.example.com", "A")
    answer = query.reply()
    answer.add_answer(RR("once.example.com", QTYPE.A, rdata=A("192.0.2.7"), ttl=300))
    packet = bytes(query.pack())
    head = parse_query(packet)
    assert head is not None
    assert cache.put(Request(head, packet, ("127.0.0.1", 1), "udp", 0.0), bytes(answer.pack())) is not None
    gc.collect()
    stored = cache._entries.get(cache_key(head))
    assert type(stored) is tuple and not gc.is_tracked(stored)
    again = DNSRecord.question("ONCE.example.com", "A")
    again_packet = bytes(again.pack())
    again_head = parse_query(again_packet)
    assert again_head is not None
    served = cache.get(Request(again_head, again_packet, ("127.0.0.1", 1), "udp", 0.0))
    assert served is not None
    reply = dns.message.from_wire(served[0])
    assert reply.id == again.header.id and reply.question[0].name.to_text() == "ONCE.example.com."
    assert [rd.to_text() for rr in reply.answer for rd in rr] == ["192.0.2.7"]
    assert cache.entry_for(Request(again_head, again_packet, ("127.0.0.1", 1), "udp", 0.0)) is not None
