"""The repeat shortcut (resolverguard.shortcut): the same bytes as the chain, and only where the chain
would give them.

Byte identity is checked by running two pipelines built from one policy side by side, one with the
shortcut and one without, on the same query sequence and the same fake clock, against one real
upstream: every reply and every log line (but its time and latency) must be the same.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import dns.message
import dns.query
import pytest
from dnsfixtures import DIGITS_MODEL, Upstream, run_resolver, run_upstream

from resolverguard.chain import Request
from resolverguard.config import (
    CacheConfig,
    ClientWatchConfig,
    Config,
    Endpoint,
    ListsConfig,
    QueryLogConfig,
    WatchAction,
    load_config,
)
from resolverguard.model import load_model
from resolverguard.pipeline import Pipeline, build_pipeline
from resolverguard.server import DnsServer
from resolverguard.steps.metrics import Metrics
from resolverguard.steps.querylog import QueryLog
from resolverguard.watch import BEACON_GAP


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


class Sent:
    """The client's side of a datagram transport: what the server sent, in order."""

    def __init__(self) -> None:
        self.replies: list[bytes] = []

    def sendto(self, data: bytes, addr: object) -> None:
        self.replies.append(data)

    def is_closing(self) -> bool:
        return False


def pipeline_for(cfg: Config, log_path: Path, clock: Clock) -> Pipeline:
    pipeline = build_pipeline(
        cfg, load_model(DIGITS_MODEL), lambda c, s: QueryLog(replace(c, path=str(log_path), writer="thread"))
    )
    pipeline.answers.clock = clock
    pipeline.cache._clock = clock  # the verdict cache's expiry on the same fake time
    return pipeline


def queries() -> list[bytes]:
    """Variants whose replies differ: EDNS or not, DO, letter case, RD, a blocked and a listed name."""
    out = []
    for name in ("www.example.com", "WwW.ExAmple.com", "x7k2q9z4w8v1.com", "blocked.example"):
        out.append(dns.message.make_query(name, "A", use_edns=False).to_wire())
        out.append(dns.message.make_query(name, "A", use_edns=0, payload=1232).to_wire())
        out.append(dns.message.make_query(name, "AAAA", want_dnssec=True).to_wire())
    norecurse = dns.message.make_query("www.example.com", "A", use_edns=False)
    norecurse.flags &= ~dns.flags.RD
    out.append(norecurse.to_wire())
    return out


async def settle(servers: Iterable[DnsServer]) -> None:
    """Until every query is answered (UDP queries waiting on the upstream are counted by their
    server: they are not tasks) and every task (prefetches) is done."""
    for _ in range(5000):
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if not pending and not any(server.inflight for server in servers):
            return
        if pending:
            await asyncio.wait(pending, timeout=5)
        else:
            await asyncio.sleep(0.001)
    raise AssertionError("queries or tasks never finished")


def without_timing(path: Path) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        line.pop("time", None), line.pop("latency_ms", None), line.pop("until", None)  # wall-clock times
    return lines


@pytest.mark.parametrize("prefetch", [True, False])
def test_replies_and_log_lines_are_the_chains(tmp_path: Path, prefetch: bool) -> None:
    with run_upstream(Upstream(ttl=300)) as up:
        cfg = Config(
            upstreams=(Endpoint("127.0.0.1", up.port),),
            lists=ListsConfig(deny=("blocked.example",)),
            cache=CacheConfig(ttl=40.0),  # the verdict cache expires inside the run
        )
        cfg = replace(cfg, answer_cache=replace(cfg.answer_cache, prefetch=prefetch))
        clock = Clock()
        fast, slow = pipeline_for(cfg, tmp_path / "fast.log", clock), pipeline_for(cfg, tmp_path / "slow.log", clock)
        assert fast.shortcut is not None
        servers = {
            "fast": DnsServer(fast.chain, (), cfg.limits, fast.gates, shortcut=fast.shortcut),
            "slow": DnsServer(slow.chain, (), cfg.limits, slow.gates),
        }
        sent = {"fast": Sent(), "slow": Sent()}

        async def run() -> None:
            # within a second, across seconds, into the verdict cache's expiry (40 s), the prefetch
            # window (270 s of 300) and past the answer's expiry
            for step in (0, 0.1, 0.4, 0.99, 0.01, 0.5, 1.2, 3, 35, 5, 0.3, 225.0, 4.9, 0.2, 35.5, 0.6, 1):
                clock.now += step
                for packet in queries():
                    for name, server in servers.items():  # one after the other: the upstream sees both
                        server.accept_udp(sent[name], packet, ("127.0.0.1", 5353))  # type: ignore[arg-type]
                        await settle(servers.values())

        asyncio.run(run())
        fast.log.close(), slow.log.close()
        fast.forwarder.close(), slow.forwarder.close()
    assert fast.shortcut.served > 100  # most of the run was answered by the shortcut
    assert sent["fast"].replies == sent["slow"].replies
    assert without_timing(tmp_path / "fast.log") == without_timing(tmp_path / "slow.log")


@pytest.mark.parametrize("action", [WatchAction.LOG, WatchAction.QUARANTINE])
def test_with_the_client_watch_replies_and_what_the_watch_learns_are_the_chains(
    tmp_path: Path, action: WatchAction
) -> None:
    """Benign clients repeat cached names while an infected one walks NXDOMAINs (each asked twice,
    the repeat cached), finds its C2 and beacons: the watch must flag the same client and learn the
    same C2 whether repeats were answered by the shortcut or by the chain, and every reply must be
    the same bytes (with quarantine, the shortcut steps aside once a client is flagged)."""
    walk = ["nxqzkvbrtw.com", "nxplmkojiu.com", "nxwsxedcrf.com", "nxtgbyhnuj.com", "nxikolpmnb.com"]
    c2, infected, benign = "kvbrtwqzab.com", "127.0.0.9", ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    with run_upstream(Upstream(ttl=300, tld_soa=True)) as up:  # NXDOMAINs cacheable, as on the Internet
        cfg = Config(
            upstreams=(Endpoint("127.0.0.1", up.port),),
            client_watch=ClientWatchConfig(enabled=True, action=action),
        )
        clock = Clock()
        fast, slow = pipeline_for(cfg, tmp_path / "fast.log", clock), pipeline_for(cfg, tmp_path / "slow.log", clock)
        assert fast.shortcut is not None and fast.watch is not None and slow.watch is not None
        servers = {
            "fast": DnsServer(fast.chain, (), cfg.limits, fast.gates, shortcut=fast.shortcut, clock=clock),
            "slow": DnsServer(slow.chain, (), cfg.limits, slow.gates, clock=clock),
        }
        sent = {"fast": Sent(), "slow": Sent()}

        def query(name: str) -> bytes:
            return dns.message.make_query(name, "A", id=7).to_wire()

        async def ask(name: str, client: str) -> None:
            for key, server in servers.items():
                server.accept_udp(sent[key], query(name), (client, 5353))  # type: ignore[arg-type]
                await settle(servers.values())
                for _ in range(3):  # the watch's inbox is read on the next turns of the loop
                    await asyncio.sleep(0)

        async def run() -> None:
            for name in ("www.example.com", "cdn.example.net", c2):
                for client in benign:
                    await ask(name, client)
            clock.now += 2.0
            for name in walk:
                for _ in range(2):
                    await ask(name, infected)
                    for client in benign:
                        await ask("www.example.com", client)
                    clock.now += 0.3
            for _ in range(4):  # the C2 found, then beacons
                await ask(c2, infected)
                for client in benign:
                    await ask("cdn.example.net", client)
                clock.now += BEACON_GAP + 1.0
            for client in (*benign, infected):
                await ask(c2, client)
                await ask("www.example.com", client)

        asyncio.run(run())
        fast.log.close(), slow.log.close()
        fast.forwarder.close(), slow.forwarder.close()
    assert fast.shortcut.served > 5, fast.shortcut.served
    assert sent["fast"].replies == sent["slow"].replies
    assert set(fast.watch.flagged) == set(slow.watch.flagged) == {infected}
    assert list(fast.watch.likely_c2) == list(slow.watch.likely_c2)
    assert fast.watch.known == slow.watch.known  # who resolved what: repeats told to the watch too
    assert fast.watch.last_answer == slow.watch.last_answer and len(fast.watch.last_answer) == 4
    assert without_timing(tmp_path / "fast.log") == without_timing(tmp_path / "slow.log")


def test_with_the_client_watch_a_quiet_repeat_is_read_again_the_next_second(tmp_path: Path) -> None:
    """A repeat the watch calls quiet for its client (a name two clients resolve) has only its time
    noted by that client's next repeats (no known-names lookup per cached answer); the watch reads
    it again each second. Here the name leaves the watch's known names (`known_names: 2`, two new
    names after it): the chain tells the watch at once that it is new again, the shortcut within
    the second, and from then on both know the same names again (fails when quiet lasts)."""
    name, clients = "www.example.com", ("127.0.0.1", "127.0.0.2")
    with run_upstream(Upstream(ttl=300)) as up:
        cfg = Config(
            upstreams=(Endpoint("127.0.0.1", up.port),),
            client_watch=ClientWatchConfig(enabled=True, known_names=2),
        )
        clock = Clock()
        fast, slow = pipeline_for(cfg, tmp_path / "fast.log", clock), pipeline_for(cfg, tmp_path / "slow.log", clock)
        assert fast.shortcut is not None and fast.watch is not None and slow.watch is not None
        servers = {
            "fast": DnsServer(fast.chain, (), cfg.limits, fast.gates, shortcut=fast.shortcut, clock=clock),
            "slow": DnsServer(slow.chain, (), cfg.limits, slow.gates, clock=clock),
        }
        sent = {"fast": Sent(), "slow": Sent()}
        known: list[tuple[bool, bool]] = []  # (fast knows the name, slow knows it) after each step

        async def ask(qname: str, client: str) -> None:
            for key, server in servers.items():
                packet = dns.message.make_query(qname, "A", id=7).to_wire()
                server.accept_udp(sent[key], packet, (client, 5353))  # type: ignore[arg-type]
                await settle(servers.values())
                for _ in range(3):  # the watch's inbox is read on the next turns of the loop
                    await asyncio.sleep(0)

        async def run() -> None:
            for client in clients:  # shared: quiet for both from now on
                await ask(name, client)
            await ask(name, clients[0])  # the shortcut's: quiet
            for other in ("new-one.example.net", "new-two.example.org"):  # the name leaves the known names
                await ask(other, clients[0])
            await ask(name, clients[0])
            known.append(("example.com" in fast.watch.known, "example.com" in slow.watch.known))
            clock.now += 1.0
            await ask(name, clients[0])
            known.append(("example.com" in fast.watch.known, "example.com" in slow.watch.known))

        asyncio.run(run())
        fast.log.close(), slow.log.close()
        fast.forwarder.close(), slow.forwarder.close()
    assert fast.shortcut.served >= 3, fast.shortcut.served
    assert sent["fast"].replies == sent["slow"].replies
    assert known == [(False, True), (True, True)]  # a second late at most
    assert fast.watch.known == slow.watch.known
    assert fast.watch.last_answer == slow.watch.last_answer


def test_with_the_client_watch_a_quiet_repeat_stays_quiet_while_no_known_name_leaves(tmp_path: Path) -> None:
    """A name leaves the watch's known names only oldest first, so while none has left, what the
    watch said of a quiet repeat still holds: the shortcut keeps the quiet client across seconds
    without asking the watch (a lookup in up to 50k known names per cached name and second: ~2.6%
    of a cached answer's samples, py-spy). New names that evict nothing, another client's new
    names and NXDOMAINs change nothing for it; once names leave (`known_names: 6`), the watch is
    asked again at the next second and the name is new again for both paths."""
    name, quiet, other = "www.example.com", "127.0.0.1", "127.0.0.2"
    with run_upstream(Upstream(ttl=300)) as up:
        cfg = Config(
            upstreams=(Endpoint("127.0.0.1", up.port),),
            client_watch=ClientWatchConfig(enabled=True, action=WatchAction.LOG, known_names=6),  # a flag holds none
        )
        clock = Clock()
        fast, slow = pipeline_for(cfg, tmp_path / "fast.log", clock), pipeline_for(cfg, tmp_path / "slow.log", clock)
        assert fast.shortcut is not None and fast.watch is not None and slow.watch is not None
        servers = {
            "fast": DnsServer(fast.chain, (), cfg.limits, fast.gates, shortcut=fast.shortcut, clock=clock),
            "slow": DnsServer(slow.chain, (), cfg.limits, slow.gates, clock=clock),
        }
        sent = {"fast": Sent(), "slow": Sent()}
        asked: list[str] = []  # clients the shortcut asked the watch about (the real call, counted)
        seen = fast.shortcut._seen
        assert seen is not None
        fast.shortcut._seen = lambda repeat, client, started: asked.append(client) or seen(repeat, client, started)
        states: list[tuple[bool, bool, int]] = []  # (fast knows the name, slow knows it, asks for `quiet`)

        async def ask(qname: str, client: str) -> None:
            for key, server in servers.items():
                packet = dns.message.make_query(qname, "A", id=7).to_wire()
                server.accept_udp(sent[key], packet, (client, 5353))  # type: ignore[arg-type]
                await settle(servers.values())
                for _ in range(3):  # the watch's inbox is read on the next turns of the loop
                    await asyncio.sleep(0)

        def note() -> None:
            known = ("example.com" in fast.watch.known, "example.com" in slow.watch.known)  # type: ignore[union-attr]
            states.append((*known, asked.count(quiet)))

        async def run() -> None:
            for client in (quiet, other):  # shared: quiet for both from now on
                await ask(name, client)
            await ask(name, quiet)  # the shortcut's: asked once, quiet
            note()
            for second, new in enumerate(("one.example.net", "two.example.org", "three.example.info")):
                clock.now += 1.0
                await ask(name, quiet)  # a new second, nothing left: not asked again
                await ask(new, other if second % 2 else quiet)  # new names, nothing evicted
                await ask(f"nx{second}qzkvbrtw.com", other)
            note()
            for new in ("four.example.biz", "five.example.co", "six.example.me"):  # 7 > 6: the shared name leaves
                await ask(new, other)
            await ask(name, quiet)  # within the second: still quiet for the shortcut
            note()
            clock.now += 1.0
            await ask(name, quiet)  # asked again: new for both
            note()

        asyncio.run(run())
        fast.log.close(), slow.log.close()
        fast.forwarder.close(), slow.forwarder.close()
    assert fast.shortcut.served >= 5, fast.shortcut.served
    assert sent["fast"].replies == sent["slow"].replies
    assert states == [(True, True, 1), (True, True, 1), (False, True, 1), (True, True, 2)]
    assert fast.watch.known == slow.watch.known
    assert fast.watch.last_answer == slow.watch.last_answer
    assert fast.watch.known_left == slow.watch.known_left > 0


def test_with_the_client_watch_a_kept_answer_holds_nothing_the_collector_walks() -> None:
    """With the watch on, the shortcut keeps per answer what the watch reads of its repeats: kept
    as the chain's Request (head, name, verdict, notes), ~6 objects per answer that every garbage
    collection walked, it made the server's collections slower and more frequent end to end
    (bench/results/watch_cost.md). What it keeps must be untracked once collected, as the reply
    bytes are; and the repeats must still reach the watch (the client's last answer moves)."""
    with run_upstream(Upstream(ttl=300)) as up:
        cfg = Config(
            upstreams=(Endpoint("127.0.0.1", up.port),),
            query_log=QueryLogConfig(path=None),  # (a log record is kept per answer too: not the watch's)
            client_watch=ClientWatchConfig(enabled=True),
        )
        clock = Clock()
        fast = build_pipeline(cfg, load_model(DIGITS_MODEL))
        fast.answers.clock = clock
        fast.cache._clock = clock
        assert fast.shortcut is not None and fast.watch is not None
        server = DnsServer(fast.chain, (), cfg.limits, fast.gates, shortcut=fast.shortcut, clock=clock)
        names = [f"www.site{chr(97 + i)}.com" for i in range(20)]  # no digit: the digits model passes them

        async def run() -> None:
            for _ in range(3):  # the chain, the chain from its caches (learned), then the shortcut
                clock.now += 0.1
                for name in names:
                    packet = dns.message.make_query(name, "A", id=7).to_wire()
                    server.accept_udp(Sent(), packet, ("127.0.0.1", 5353))  # type: ignore[arg-type]
                    await settle([server])
                    await asyncio.sleep(0)

        asyncio.run(run())
        fast.forwarder.close()
    assert fast.shortcut.served == len(names)
    assert fast.watch.last_answer == {"127.0.0.1": clock.now}  # told of the repeats
    gc.collect()
    kept = [table for table in vars(fast.shortcut).values() if isinstance(table, dict)]
    held = [x for table in kept for entry in table.values() if isinstance(entry, tuple) for x in entry]
    assert len(held) >= 6 * len(names)  # the table of kept answers was found
    assert not [x for x in held if isinstance(x, Request)]
    assert not [x for x in held if isinstance(x, tuple) and gc.is_tracked(x)]


def test_not_built_where_the_decision_depends_on_the_client_or_when_turned_off(tmp_path: Path) -> None:
    rules = tmp_path / "rules.txt"
    rules.write_text("||ads.example^$client=192.0.2.5\n")
    cases = {
        "plain": "",
        "groups": "groups:\n  - name: kids\n    clients: [192.0.2.0/24]\n",
        "scoped rule": f"lists:\n  deny_files: [{{path: '{rules}', format: adblock}}]\n",
        "metrics": "metrics: {listen: '127.0.0.1:9'}\n",
        "turned off": "answer_cache: {repeat_shortcut: false}\n",
    }
    built = {}
    for name, text in cases.items():
        policy = tmp_path / f"{name}.yaml"
        policy.write_text("upstreams: ['127.0.0.1:53']\nquery_log: off\n" + text)
        cfg = load_config(policy)
        metrics = Metrics() if cfg.metrics is not None else None
        built[name] = build_pipeline(cfg, load_model(DIGITS_MODEL), metrics=metrics).shortcut is not None
    assert built == {"plain": True, "groups": False, "scoped rule": False, "metrics": False, "turned off": False}


def ask(r, name: str, **kw) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, "A", **kw), r.host, port=r.port, timeout=3)


def test_repeats_over_real_sockets_and_a_pause_turns_it_off(tmp_path: Path) -> None:
    with run_upstream(Upstream()) as up:
        cfg = Config(upstreams=(Endpoint("127.0.0.1", up.port),), lists=ListsConfig(deny=("blocked.example",)))
        with run_resolver(cfg, tmp_path / "q.log") as r:
            shortcut = r.service.server.shortcut
            assert shortcut is not None
            first, second, third = (ask(r, "www.example.com") for _ in range(3))  # forwarded, chain hit, shortcut
            assert shortcut.served == 1 and len(up.queries) == 1
            assert first.answer == second.answer == third.answer
            for _ in range(2):
                assert str(ask(r, "blocked.example").answer[0][0]) == "0.0.0.0"  # the sinkhole, learned
            assert shortcut.served == 2
            r.service.pipeline.pause.pause(60)
            assert ask(r, "blocked.example").answer[0][0].address != "0.0.0.0"  # the pause is in force at once
            assert shortcut.served == 2
            lines = r.log_lines()
    assert [(x["qname"], x["action"], x.get("answer_cache")) for x in lines] == [
        ("www.example.com", "pass", None),
        ("www.example.com", "pass", "hit"),
        ("www.example.com", "pass", "hit"),
        ("blocked.example", "sinkhole", None),
        ("blocked.example", "sinkhole", None),
        ("blocked.example", "log", None),
    ]
