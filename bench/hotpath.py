"""The resolver's own CPU per query on the hit path and the miss path, without dnsperf around it.

    python bench/hotpath.py [--rounds 5] [--names 4000] [--log]

bench/compare.py measures the whole server under dnsperf, which a machine shared with other jobs
distorts a lot (both compete for 2 cores). This runs the real `DnsServer` and pipeline (the
default policy: full chain, shipped model) in this process, with NSD as the upstream in its own
process, and hands it datagrams the way uvloop's read callback does (`accept_udp`, a transport
that only keeps the replies): what is timed is the Python work per query plus the upstream
socket's syscalls, not the client socket's. Process CPU time, best of `--rounds` rounds (time
spent preempted by other jobs is not counted):

- hits: every name in the answer cache and verdict cache (Zipf over the names, as compare's hits);
- misses: never-seen registrable names, each scored and forwarded (in bursts of 64, as dnsperf's
  8 clients keep many in flight).

`--log` adds the query log to a file (the writer's process CPU is counted too, from its rusage).
Rows go to stdout; with `--out NAME` also to bench/results/NAME.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import compare as C  # noqa: E402
from dnslib import DNSRecord  # noqa: E402

from resolverguard.config import load_config  # noqa: E402
from resolverguard.model import load_model  # noqa: E402
from resolverguard.pipeline import build_pipeline  # noqa: E402
from resolverguard.server import DnsServer  # noqa: E402

CLIENT = ("127.0.0.1", 40000)


class Replies:
    """A datagram transport that keeps count of what was sent (the client side of uvloop's)."""

    def __init__(self) -> None:
        self.count, self.last = 0, b""
        self.done: asyncio.Future[None] | None = None
        self.expect = 0

    def sendto(self, data: bytes, addr: Any) -> None:
        self.count += 1
        self.last = data
        if self.done is not None and self.count >= self.expect and not self.done.done():
            self.done.set_result(None)

    def is_closing(self) -> bool:
        return False


def packets(names: list[str]) -> list[bytes]:
    return [bytes(DNSRecord.question(n, "A").pack()) for n in names]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def main_async(args: argparse.Namespace, work: Path, upstream: int) -> dict[str, float]:
    log = f"{{path: '{work}/q.jsonl'}}" if args.log else "off"
    policy = work / "policy.yaml"
    policy.write_text(
        f"upstreams: ['127.0.0.1:{upstream}']\nquery_log: {log}\nrate_limit: {{qps: 0}}\n"
        "limits: {max_inflight: 8192}\n"
    )
    cfg = load_config(policy)
    pipeline = build_pipeline(cfg, load_model(cfg.model))
    shortcut = None if args.no_shortcut else getattr(pipeline, "shortcut", None)  # (older trees have none)
    server = DnsServer(pipeline.chain, cfg.listen, cfg.limits, pipeline.gates)
    server.shortcut = shortcut
    rng = random.Random(7)
    names = C.benign_names(args.names, rng)
    hit_names = rng.choices(names, weights=[1 / (r + 1) ** 1.1 for r in range(len(names))], k=20_000)
    hits = packets(hit_names)
    out = Replies()
    # warm: every name answered once (forwarded, scored), so the timed queries are hits
    await burst(server, out, packets(names))
    best: dict[str, float] = {}
    if args.profile:
        import cProfile

        cProfile.runctx("for p in hits: server.accept_udp(out, p, CLIENT)", globals(), locals(), sort="tottime")
    for round_ in range(args.rounds):
        gc.collect()
        began = time.process_time()
        for packet in hits:
            server.accept_udp(out, packet, CLIENT)  # type: ignore[arg-type]
        best["hits"] = min(best.get("hits", 1e9), (time.process_time() - began) / len(hits) * 1e6)
        misses = packets(C.miss_names(names, args.names, rng, f"r{round_}x"))
        gc.collect()
        began = time.process_time()
        await burst(server, out, misses)
        best["misses"] = min(best.get("misses", 1e9), (time.process_time() - began) / len(misses) * 1e6)
    if args.log:
        child = children_cpu()
        began = time.process_time()
        pipeline.log.close()
        best["log close (resolver)"] = time.process_time() - began
        best["writer process s"] = children_cpu() - child
    pipeline.forwarder.close()
    return best


async def burst(server: DnsServer, out: Replies, batch: list[bytes], size: int = 64) -> None:
    """Sends `batch` in bursts of `size` and waits for each burst's replies."""
    loop = asyncio.get_running_loop()
    for at in range(0, len(batch), size):
        chunk = batch[at : at + size]
        out.done, out.expect = loop.create_future(), out.count + len(chunk)
        for packet in chunk:
            server.accept_udp(out, packet, CLIENT)  # type: ignore[arg-type]
        await asyncio.wait_for(out.done, 10)
        out.done = None


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--rounds", type=int, default=5)
    a.add_argument("--names", type=int, default=4000)
    a.add_argument("--log", action="store_true")
    a.add_argument("--no-shortcut", action="store_true")
    a.add_argument("--profile", action="store_true", help="cProfile of one pass over the hits first")
    args = a.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rg-hotpath-"))
    port = C.free_port()
    nsd = C.start_nsd(work, port)
    try:
        C.wait_ready(port)
        import uvloop

        best = uvloop.run(main_async(args, work, port))
    finally:
        nsd.terminate()
        nsd.wait(10)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load {load}: " + ", ".join(f"{k} {v:.2f}" for k, v in best.items()))


if __name__ == "__main__":
    main()
