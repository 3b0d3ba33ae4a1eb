"""Where a never-seen name's microseconds go in the standalone server, piece by piece.

    python bench/missprofile.py [--out miss_v2_profile]

bench/compare.py says a miss (every name new, forwarded to NSD) costs resolverguard ~2.3x what it
costs Unbound, and (d)/(c) says the model is not why: the forwarding path is. py-spy on the server
under dnsperf mostly shows `send` and `sendmsg` (a loopback send wakes NSD, and the sampler counts
the time this process then waits for a CPU as time in the call), so this measures each piece of
the path alone, in this process, on the inputs a miss meets (NSD's answer to a wildcard name:
answer + NS + glue), best of 5 repeats of process CPU time, and beside it the old way of the
pieces this branch replaced (a Task per waiting query, a `call_later` timer per upstream query,
the answer cache reading the answer again, cachetools' LRU). The end-to-end figure is
bench/hotpath.py's (the real DnsServer and pipeline in this process, NSD in its own).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.rrset
from cachetools import LRUCache

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resolverguard import replies  # noqa: E402
from resolverguard.chain import Request  # noqa: E402
from resolverguard.config import Config  # noqa: E402
from resolverguard.model import load_model  # noqa: E402
from resolverguard.names import NameParser  # noqa: E402
from resolverguard.pipeline import groups_for  # noqa: E402
from resolverguard.server import Resumed  # noqa: E402
from resolverguard.steps.answers import AnswerCache, Lru, layout_of, wire_layout  # noqa: E402
from resolverguard.steps.block import BlockStep  # noqa: E402
from resolverguard.steps.groups import GroupStep  # noqa: E402
from resolverguard.steps.lists import ListStep  # noqa: E402
from resolverguard.steps.names import NameStep  # noqa: E402
from resolverguard.steps.pause import PauseStep, PauseSwitch  # noqa: E402
from resolverguard.steps.policy import PolicyStep  # noqa: E402
from resolverguard.steps.upstream import Deadlines, RandomIds, matches  # noqa: E402
from resolverguard.wire import parse_query  # noqa: E402

REPEATS = 5


def best_us(fn: Callable[[], object], number: int) -> float:
    """Process CPU microseconds per call, best of REPEATS (time preempted by other jobs is not counted)."""
    best = float("inf")
    for _ in range(REPEATS):
        began = time.process_time()
        for _ in range(number):
            fn()
        best = min(best, (time.process_time() - began) / number * 1e6)
    return best


def nsd_like(name: str) -> tuple[bytes, bytes]:
    """A query for `name` and NSD's answer to it from compare.py's wildcard zone."""
    query = dns.message.make_query(name, "A", use_edns=False)
    reply = dns.message.make_response(query)
    reply.flags |= 0x0400
    reply.answer.append(dns.rrset.from_text(name, 3600, "IN", "A", "192.0.2.1"))
    reply.authority.append(dns.rrset.from_text(".", 3600, "IN", "NS", "ns."))
    reply.additional.append(dns.rrset.from_text("ns.", 3600, "IN", "A", "127.0.0.1"))
    return query.to_wire(), reply.to_wire()


def pieces(n: int) -> list[tuple[str, float, str]]:
    """(piece, us, what it was before this branch) for the synchronous pieces."""
    packet, answer = nsd_like("shopnews123.com.")
    head = parse_query(packet)
    assert head is not None
    rows: list[tuple[str, float, str]] = []
    rows.append(("parse the query (wire.parse_query)", best_us(lambda: parse_query(packet), n), ""))
    rows.append(("Request object", best_us(lambda: Request(head, packet, ("127.0.0.1", 1), "udp", 0.0, 512), n), ""))
    cfg = Config()
    groups = groups_for(cfg, load_model(cfg.model).metadata.thresholds)
    parser = NameParser(cfg.private_suffixes)
    names = iter([f"shop{i}x7q.com." for i in range(n * REPEATS * 3)])
    fresh = [parse_query(nsd_like(f"w{i}z9.com.")[0]) for i in range(n * REPEATS)]
    rows.append(
        ("name step: PSL walk, memo miss (names.NameParser)", best_us(lambda: parser.parse(next(names)), n), "")
    )
    checks = [GroupStep(groups).check, ListStep(groups.default.lists).check, PolicyStep(groups.default.policy).check]
    checks += [PauseStep(PauseSwitch()).check, BlockStep(cfg.sinkhole).check]
    name_step = NameStep(NameParser(cfg.private_suffixes)).check
    heads = iter(fresh)

    def decide() -> None:
        h = next(heads)
        request = Request(h, packet, ("127.0.0.1", 1), "udp", 0.0)  # type: ignore[arg-type]
        name_step(request)
        for check in checks:
            check(request)

    rows.append(
        ("decision checks with the name step (group, name, lists, policy, pause, block)", best_us(decide, n), "")
    )
    cache = AnswerCache(cfg.answer_cache)
    other = nsd_like("nothere.com.")[0]
    miss = Request(parse_query(other), other, ("127.0.0.1", 1), "udp", 0.0)  # type: ignore[arg-type]
    rows.append(("answer cache lookup, miss", best_us(lambda: cache.get(miss), n), ""))
    ids = RandomIds()
    rows.append(
        (
            "upstream query: random ID + ID patched in",
            best_us(lambda: ids.draw().to_bytes(2, "big") + packet[2:], n),
            "",
        )
    )
    rows.append(
        ("reply check: ID and question (upstream.matches)", best_us(lambda: matches(answer, 0, head.question), n), "")
    )
    rows.append(
        (
            "the answer passed on: read in full, bailiwick, header/OPT (replies.forwarded_read)",
            best_us(lambda: replies.forwarded_read(answer, head), n),
            "",
        )
    )
    ours, message = replies.forwarded_read(answer, head) or (b"", None)
    assert message is not None
    rows.append(
        (
            "answer cache: layout from the forwarder's read (layout_of)",
            best_us(lambda: layout_of(ours, message), n),
            f"read again (wire_layout): {best_us(lambda: wire_layout(ours), n):.2f}",
        )
    )
    keys = iter([b"k%d" % i for i in range(n * REPEATS * 2)])
    lru: Lru[int] = Lru(1000)
    old: LRUCache[bytes, int] = LRUCache(maxsize=1000)
    for i in range(1000):
        lru[b"f%d" % i] = old[b"f%d" % i] = 1

    def put_old() -> None:
        old[next(keys)] = 1

    def put_new() -> None:
        lru[next(keys)] = 1

    rows.append(
        (
            "answer cache: LRU insert with eviction (answers.Lru)",
            best_us(put_new, n),
            f"cachetools LRUCache: {best_us(put_old, n):.2f}",
        )
    )
    request = Request(head, packet, ("127.0.0.1", 1), "udp", 0.0, 512)
    request.answer_read = ours, message
    rows.append(("answer cache insert, whole (AnswerCache.put)", best_us(lambda: cache.put(request, ours), n), ""))
    return rows


async def waits(n: int) -> list[tuple[str, float, str]]:
    """The per-query asyncio machinery: the wait for the upstream, before and after."""
    loop = asyncio.get_running_loop()
    rows: list[tuple[str, float, str]] = []

    def timer_old() -> None:
        loop.call_later(2.0, print).cancel()

    deadlines = Deadlines(2.0)

    def timer_new() -> None:
        deadlines.done(deadlines.expire(loop, loop.create_future()))

    rows.append(
        (
            "upstream timeout (one timer for all: upstream.Deadlines)",
            best_us(timer_new, n),
            f"call_later + cancel per query: {best_us(timer_old, n):.2f}",
        )
    )
    deadlines._reset()

    async def query(future: asyncio.Future[None]) -> None:
        await future

    def started(how: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = loop.create_future()
        coro = query(future)
        waiting_on = coro.send(None)
        if how == "task":
            from resolverguard.server import finish

            task = asyncio.ensure_future(finish(coro, waiting_on))
            task.add_done_callback(lambda _: None)
        else:
            Resumed(coro, lambda: None).wait(waiting_on)
        return future

    measured = {}
    for how in ("task", "resumed"):
        best = float("inf")
        for _ in range(REPEATS):
            began = time.process_time()
            futures = [started(how) for _ in range(n)]
            for future in futures:
                future.set_result(None)
            for _ in range(3):  # the wake-ups, then (a Task) its done callbacks
                await asyncio.sleep(0)
            best = min(best, (time.process_time() - began) / n * 1e6)
        measured[how] = best
    rows.append(
        (
            "a query that waits: started, resumed on its future, finished (server.Resumed)",
            measured["resumed"],
            f"a Task (server.finish): {measured['task']:.2f}",
        )
    )
    return rows


def syscalls(n: int) -> list[tuple[str, float, str]]:
    """One datagram each way on loopback sockets, as the kernel charges this process (no NSD)."""
    a, b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    b.connect(a.getsockname())
    a.setblocking(False)
    packet = nsd_like("shopnews123.com.")[1]

    def send_recv() -> None:
        b.send(packet)
        a.recvfrom(65535)

    def failed_recv() -> None:
        with contextlib.suppress(BlockingIOError):
            a.recv(65535)

    rows = [
        ("send + receive one datagram (syscalls, Python calls)", best_us(send_recv, n), ""),
        ("a read that finds nothing (the reader's last recv per wake-up)", best_us(failed_recv, n), ""),
    ]
    a.close(), b.close()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--number", type=int, default=20_000)
    p.add_argument("--out", help="write the table to bench/results/OUT.md too")
    a = p.parse_args()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    import uvloop

    rows = pieces(a.number) + uvloop.run(waits(a.number)) + syscalls(a.number)
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"# A miss's pieces (bench/missprofile.py), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"CPU us per call, best of {REPEATS} x {a.number}, this process (uvloop); load average before {load_before}, "
        f"after {load_after} (a shared machine: the pieces scale together; read them against each other).",
        "",
        "| piece | us | before this branch |",
        "|---|---:|---|",
        *(f"| {name} | {us:.2f} | {old} |" for name, us, old in rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        (ROOT / "bench" / "results" / f"{a.out}.md").write_text(text)


if __name__ == "__main__":
    main()
