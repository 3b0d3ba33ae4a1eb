"""The client watch's cost per query, in process: results/watch_cost.md.

`compare.py --watch` measures it end to end with dnsperf, but on a shared 2-core machine two runs of
the same target differ by 20-40%, more than the cost itself. This runs the chain that
`build_pipeline` makes, in one process, on cached answers (a name that resolves, and an NXDOMAIN;
the loop turns after each query, as between packets, so work the watch defers with call_soon is
counted), with the watch off and on (action log, so it keeps watching), alternated; each figure is the best
of 7 rounds of 20,000 queries, timed in this thread's CPU time (time.thread_time: another process's
load does not count, as it does in wall time, where it once gave the watch a negative cost).

    python bench/watch_cost.py
"""

from __future__ import annotations

import asyncio
import os
import random
import string
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from dnsfixtures import DIGITS_MODEL, Upstream, run_upstream  # noqa: E402
from dnslib import DNSRecord  # noqa: E402

from resolverguard.chain import Next, Request  # noqa: E402
from resolverguard.config import ClientWatchConfig, Config, Endpoint, QueryLogConfig, WatchAction  # noqa: E402
from resolverguard.model import load_model  # noqa: E402
from resolverguard.pipeline import Pipeline, build_pipeline  # noqa: E402
from resolverguard.steps.querylog import QueryLog  # noqa: E402
from resolverguard.wire import parse_query  # noqa: E402

ROUNDS, QUERIES = 7, 20_000
END_TO_END = "\n## End to end"  # results/watch_cost.md from here on is written by hand (bench/watch_profile.py)
NEW_NAMES = 2_000  # per round: each one goes to the upstream (a Python test server), so fewer


def request(packet: bytes) -> Request:
    head = parse_query(packet)
    assert head is not None
    return Request(head, packet, ("127.0.0.1", 5000), "udp", time.monotonic())


# five alike NXDOMAIN names (the test upstream answers NXDOMAIN for "nx..."): enough to flag the client
WALK = ("nxqzkvbrtw.com", "nxplmkojiu.com", "nxwsxedcrf.com", "nxtgbyhnuj.com", "nxikolpmnb.com")
KINDS = {  # what is measured: (the cached name, what the client asked before)
    "resolved": ("www.example.org", ()),
    "nxdomain": ("nxqzkvbrtw.com", ()),
    "resolved, client flagged": ("www.example.org", WALK),  # bench/compare.py --watch's case
}
REPEAT = "resolved, client flagged, repeat shortcut"  # compare.py --watch's hits: the shortcut answers them
NEVER_SEEN = f"never-seen names, half sinkholed, client flagged (best of {ROUNDS} x {NEW_NAMES:,})"


async def per_query_us(chain: Next, name: str, before: tuple[str, ...] = ()) -> float:
    for earlier in before:
        await chain(request(bytes(DNSRecord.question(earlier).pack())))
        await asyncio.sleep(0)
    packet = bytes(DNSRecord.question(name).pack())
    await chain(request(packet))  # now cached
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.thread_time()
        for _ in range(QUERIES):
            await chain(request(packet))
            await asyncio.sleep(0)  # a turn of the loop, as between packets: the watch's call_soon work runs
        best = min(best, (time.thread_time() - start) / QUERIES * 1e6)
    return best


async def repeat_us(pipeline: Pipeline, name: str, before: tuple[str, ...]) -> float:
    """An exact repeat of a cached answer, as the server answers it: by the repeat shortcut, which
    tells the watch of it (`ClientWatchStep.seen_repeat`), before any chain."""
    chain, shortcut = pipeline.chain, pipeline.shortcut
    assert shortcut is not None
    for earlier in before:
        await chain(request(bytes(DNSRecord.question(earlier).pack())))
        await asyncio.sleep(0)
    packet = bytes(DNSRecord.question(name).pack())
    await chain(request(packet))  # now cached
    learned = request(packet)
    shortcut.learn(learned, await chain(learned))
    client = ("127.0.0.1", 5000)
    if shortcut.reply(packet, client) is None:
        sys.exit("the repeat shortcut did not learn the cached answer: nothing to measure")
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.thread_time()
        for _ in range(QUERIES):
            shortcut.reply(packet, client)
            await asyncio.sleep(0)
        best = min(best, (time.thread_time() - start) / QUERIES * 1e6)
    return best


async def never_seen_us(chain: Next, before: tuple[str, ...]) -> float:
    """compare.py's misses for a flagged client: every name new, every other one with a digit (the
    test model sinkholes those, which the watch takes as NXDOMAIN), the rest resolved upstream. The
    upstream runs on its own thread: the loop thread's CPU time leaves it out."""
    for earlier in before:
        await chain(request(bytes(DNSRecord.question(earlier).pack())))
        await asyncio.sleep(0)
    best, rng = float("inf"), random.Random(3)
    for _ in range(ROUNDS):
        names = ["".join(rng.choices(string.ascii_lowercase, k=12)) for _ in range(NEW_NAMES)]
        packets = [bytes(DNSRecord.question(f"{n}{i % 2 or ''}.com").pack()) for i, n in enumerate(names)]
        start = time.thread_time()
        for packet in packets:
            await chain(request(packet))
            await asyncio.sleep(0)
        best = min(best, (time.thread_time() - start) / NEW_NAMES * 1e6)
    return best


def main() -> None:
    model = load_model(DIGITS_MODEL)
    with run_upstream(Upstream(tld_soa=True)) as up:
        base = Config(upstreams=(Endpoint("127.0.0.1", up.port),), query_log=QueryLogConfig(path=None))
        watched = replace(base, client_watch=ClientWatchConfig(enabled=True, action=WatchAction.LOG))
        results: dict[str, dict[str, list[float]]] = {"off": {}, "on": {}}
        for _ in range(2):
            for label, cfg in (("off", base), ("on", watched)):
                for kind, (name, before) in KINDS.items():
                    chain = build_pipeline(cfg, model, QueryLog).chain  # each kind from a fresh state
                    results[label].setdefault(kind, []).append(asyncio.run(per_query_us(chain, name, before)))
                pipeline, flagged = build_pipeline(cfg, model, QueryLog), KINDS["resolved, client flagged"]
                results[label].setdefault(REPEAT, []).append(asyncio.run(repeat_us(pipeline, *flagged)))
                chain = build_pipeline(cfg, model, QueryLog).chain
                results[label].setdefault(NEVER_SEEN, []).append(asyncio.run(never_seen_us(chain, WALK)))
    lines = [
        f"# Client watch cost in process (bench/watch_cost.py), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Cached answers through the whole chain (query log off), best of {ROUNDS} x {QUERIES:,} queries, twice, "
        f"CPU time of the loop's thread; load average {os.getloadavg()[0]:.1f}:",
        "",
        "| answer | watch off, us | watch on, us | added, us |",
        "|---|---:|---:|---:|",
    ]
    for kind in (*KINDS, REPEAT, NEVER_SEEN):
        off, on = min(results["off"][kind]), min(results["on"][kind])
        lines.append(f"| {kind} | {off:.2f} | {on:.2f} | {on - off:+.2f} |")
    lines += [
        "",
        "The server adds its own per-query work (socket, parse, gates): bench/results/compare.md's (d) answers",
        "~40k cached queries/s on one core, ~25 us each, which is what the added time is a share of.",
        "",
    ]
    out = ROOT / "bench" / "results" / "watch_cost.md"
    kept = out.read_text().partition(END_TO_END)[1:] if out.exists() else ()
    out.write_text("\n".join(lines) + "".join(kept))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
